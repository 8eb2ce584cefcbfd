"""Work that depends on nothing but the model's parameters and buffers, done once: a traced layer may rebuild
tensors from its weights on every call (a bidirectional GRU concatenates and stacks its weight matrices, a
Linear transposes its weight). Such computations move into one :class:`ParameterCache` node, which runs them
on the first call and again only when one of its tensors changes (version counter, or a new tensor in its
place), as the fused convolutions' weights do."""
from __future__ import annotations

import operator

from torch import fx

from .fused_conv import PreparedWeights


class ParameterCache(PreparedWeights):
    """Callable graph node: ``(*weights) -> tuple`` of the values its subgraph computes from them, remembered."""

    def __init__(self, subgraph: fx.GraphModule):
        super().__init__()
        self.subgraph = subgraph
        self.__name__ = "medkern_parameter_cache"  # what the graph's code calls the node

    def __call__(self, *weights):
        return self.prepared(*weights)

    def _prepare(self, *weights):
        return tuple(self.subgraph(*weights))


def hoist_parameter_work(gm: fx.GraphModule, weight_positions: list[bool]) -> int:
    """Moves the parameter-only computations of gm into one cached node; ``weight_positions[i]``: whether
    placeholder i is a parameter or buffer. Returns how many values the cache provides."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(weight_positions):
        return 0
    weights = {n for n, w in zip(placeholders, weight_positions) if w}
    constant = set()  # computed from weights (and literals) alone
    for node in gm.graph.nodes:
        if node.op != "call_function" or isinstance(node.target, ParameterCache):
            continue
        inputs = node.all_input_nodes
        if inputs and all(i in weights or i in constant for i in inputs):
            constant.add(node)
    # What the rest of the graph reads; never a graph output (the caller could change a cached tensor).
    frontier = [n for n in gm.graph.nodes if n in constant
                and any(u not in constant and u.op != "output" for u in n.users)
                and not any(u.op == "output" for u in n.users)]
    if not frontier:
        return 0
    needed, stack = set(), list(frontier)
    while stack:
        node = stack.pop()
        if node in needed or node not in constant:
            continue
        needed.add(node)
        stack.extend(node.all_input_nodes)
    inputs = [n for n in placeholders if n in weights and any(u in needed for u in n.users)]
    sub = fx.Graph()
    env = {n: sub.placeholder(n.name) for n in inputs}
    for node in gm.graph.nodes:
        if node in needed:
            env[node] = sub.node_copy(node, env.__getitem__)
    sub.output(tuple(env[n] for n in frontier))
    cache = ParameterCache(fx.GraphModule(gm, sub))
    with gm.graph.inserting_before(next(n for n in gm.graph.nodes if n.op != "placeholder")):
        call = gm.graph.call_function(cache, tuple(inputs))
        for i, node in enumerate(frontier):
            value = gm.graph.call_function(operator.getitem, (call, i))
            value.meta = dict(node.meta)
            node.replace_all_uses_with(value)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    return len(frontier)
