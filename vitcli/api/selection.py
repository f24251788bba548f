"""Which layers, heads and queries `attend` reads: parsed once from the keywords, for one grid."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vitcli.api.values import Layers, Query
from vitcli.api.values import query as parse_query_value
from vitcli.core.select import PooledQuery
from vitcli.errors import VitcliError, option_errors

if TYPE_CHECKING:
    from vitcli.core.config import ViTConfig
    from vitcli.core.select import HeadSelection


def default_query(config: "ViTConfig") -> str:
    """The row of what the model pools: the class token, else the attention-pool probe, else the patch rows' mean."""
    return "cls" if config.class_token else "probe" if config.pooling == "map" else "mean"


@dataclass
class Selection:
    """The parsed --layer, --head and --query, resolved against a model and a grid."""

    layers: list[int]
    heads: "HeadSelection"
    queries: list[int] | None  # token rows; None: every token; [] for a pooled row
    pooled: PooledQuery | None = None  # "probe" or "mean": a row that is no token (vitcli.core.select.PooledQuery)

    @property
    def probe(self) -> bool:
        return self.pooled == "probe"

    @property
    def one_row(self) -> bool:
        """One query row: a pooled row or a single token."""
        return bool(self.pooled) or (self.queries is not None and len(self.queries) == 1)

    @classmethod
    def parse(cls, config: "ViTConfig", grid: tuple[int, int], layer: Layers, head: Layers,
              query: Query) -> "Selection":
        from vitcli.core.select import parse_heads, parse_layers, parse_query, prefix_names

        with option_errors("--layer"):
            layers = parse_layers(str(layer), config.depth)
        with option_errors("--head"):
            heads = parse_heads(str(head), config.heads)
        text = default_query(config) if query is None else str(parse_query_value("query", query))
        word = text.strip().lower()
        has_probe = config.pooling == "map"
        if word == "probe" and not has_probe:
            raise VitcliError("--query", "probe is the attention-pool probe's row, and this model pools without one "
                              f"({config.pooling})")
        if word == "probe" or (word == "cls" and has_probe and not config.class_token):
            return cls(layers, heads, [], "probe")  # the probe stands in for the class token
        if word == "mean":
            return cls(layers, heads, [], "mean")
        names = prefix_names(config.class_token, config.distilled, config.num_registers)
        also = ["probe", "mean"] if has_probe else ["mean"]
        with option_errors("--query"):
            queries = parse_query(text, grid, config.num_prefix_tokens, config.class_token, names, also)
        return cls(layers, heads, queries)


__all__ = ["Selection", "default_query"]
