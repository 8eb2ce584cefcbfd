"""Medical data for ``medkern.models``: readers (MedMNIST ``.npz`` images and volumes, ISIC-style image
folders, UCR archive files, WFDB records cut into beats), deterministic synthetic stand-ins, augmentation,
and ``load``, which turns a path (or nothing) into train/val/test splits. Unreadable or inconsistent files raise
``DataFileError`` (a ``ValueError``) naming the file and the problem."""
from .augment import ImageAugment, SignalAugment, VolumeAugment
from .datasets import ArrayDataset, DataSplits, stratified_split
from .errors import DataFileError, shared_data_dir
from .image_folder import read_image_folder
from .load import load
from .medmnist import read_medmnist
from .synthetic import VITALS_CHANNELS, synthetic_ecg, synthetic_lesions, synthetic_nodules, synthetic_vitals
from .ucr import read_ucr
from .wfdb import AAMI_CLASSES, AAMI_MAP, read_annotations, read_header, read_record, wfdb_beats

__all__ = [
    "AAMI_CLASSES", "AAMI_MAP", "ArrayDataset", "DataFileError", "DataSplits", "ImageAugment", "SignalAugment",
    "VITALS_CHANNELS", "VolumeAugment", "load", "read_annotations", "read_header", "read_image_folder", "read_medmnist",
    "read_record", "read_ucr", "shared_data_dir", "stratified_split", "synthetic_ecg", "synthetic_lesions",
    "synthetic_nodules", "synthetic_vitals", "wfdb_beats",
]
