"""The one table of model kinds: what each kind is, declared once.

Every layer that needs to know something about a kind (does it predict a cell's
expression or the change between two cells, does it need an atlas, does it train a
network, how is it explained, how few genes does it train on) asks its
:class:`Kind` here, through :func:`kind_of` or :func:`kind_names`; nothing tests a
kind's name prefix or an estimator's attributes.

The table is the kinds declared in :data:`DECLARED` (the baselines, the atlas kinds
and the differential kinds, each with the estimator class that implements it) plus
one entry per registered network (:data:`histexpr.models.NETWORKS`), read live, so
registering a network adds a kind. Estimator classes are named by ``"module:Class"``
and imported only when a kind is made or loaded, so reading the table stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from histexpr.errors import HistexprError
from histexpr.models import NETWORKS

__all__ = [
    "DECLARED",
    "EXPLAINS",
    "FAMILIES",
    "INPUTS",
    "KIND_TABLE",
    "NEURAL_ESTIMATOR",
    "TASKS",
    "Kind",
    "kind_names",
    "kind_of",
]

#: What a kind predicts: a cell type's expression, or the change between two cell types.
TASKS = ("expression", "difference")
#: What a kind reads besides the training table: the histone signal always; an
#: expression atlas (``--atlas``); the two cells of a pair (``--pair A:B``).
INPUTS = ("signal", "atlas", "pair")
#: How a kind is explained: ``attributions`` (input gradients of a network),
#: ``attention`` (the network's attention maps), ``prior`` (the atlas prior table),
#: ``contributions`` (exact additive contributions of a linear or tree model).
EXPLAINS = ("attributions", "attention", "prior", "contributions")
#: The families of ``docs/architecture.md``: each has one module and one registration.
FAMILIES = ("baseline", "network", "atlas", "differential")
#: The estimator of every registered network.
NEURAL_ESTIMATOR = "histexpr.estimators.neural:NeuralEstimator"


@dataclass(frozen=True)
class Kind:
    """The declaration of one model kind.

    Attributes
    ----------
    name : str
        What ``--model`` takes, e.g. ``"ridge"``.
    estimator : str
        ``"module:Class"`` of its estimator (``create(kind, overrides)``, ``load(directory)``).
    family : str
        One of :data:`FAMILIES`.
    task : str
        One of :data:`TASKS`.
    inputs : tuple of str
        A subset of :data:`INPUTS`, ``"signal"`` first.
    network : bool
        It trains a torch network: the neural training settings (epochs, batch size,
        devices, ``--resume``) apply.
    explain : tuple of str
        How ``histexpr explain`` explains it (:data:`EXPLAINS`); empty: it is not explained.
    min_genes : int
        Fewest distinct training genes it trains on; fewer are refused in one line.
    description : str
        One line for listings.
    """

    name: str
    estimator: str
    family: str
    task: str = "expression"
    inputs: tuple[str, ...] = ("signal",)
    network: bool = False
    explain: tuple[str, ...] = ()
    min_genes: int = 1
    description: str = ""

    def __post_init__(self):
        for field, value, allowed in (
            ("family", (self.family,), FAMILIES),
            ("task", (self.task,), TASKS),
            ("inputs", self.inputs, INPUTS),
            ("explain", self.explain, EXPLAINS),
        ):
            bad = [v for v in value if v not in allowed]
            if bad:
                raise ValueError(f"kind {self.name}: {field} {bad[0]!r} not in {allowed}")
        if ("pair" in self.inputs) != (self.task == "difference"):
            raise ValueError(f"kind {self.name}: a pair input goes with the difference task")

    @property
    def needs_atlas(self) -> bool:
        """It reads an expression atlas (``--atlas``)."""
        return "atlas" in self.inputs

    @property
    def pairs(self) -> bool:
        """It predicts the change between two cell types (``--pair A:B``)."""
        return self.task == "difference"

    @property
    def explainable(self) -> bool:
        """``histexpr explain`` explains it."""
        return bool(self.explain)


def _declared(*kinds: Kind) -> dict[str, Kind]:
    return {k.name: k for k in kinds}


_B = "histexpr.estimators.baselines"
#: The kinds outside the network registry, in listing order.
DECLARED: dict[str, Kind] = _declared(
    Kind("global-mean", f"{_B}:GlobalMean", "baseline", description="mean training target"),
    Kind("gene-mean", f"{_B}:GeneMean", "baseline", description="each gene's training mean"),
    # the penalty is cross-validated over genes, 5 folds by default
    Kind(
        "ridge", f"{_B}:RidgeBaseline", "baseline", min_genes=5, description="ridge on log1p bins"
    ),
    Kind("random-forest", f"{_B}:RandomForestBaseline", "baseline", min_genes=5),
    # leaves hold at least 20 examples: fewer genes give one constant
    Kind("lightgbm", f"{_B}:LightGBMBaseline", "baseline", min_genes=20),
    Kind(
        "atlas-ridge",
        "histexpr.estimators.atlas:AtlasRidge",
        "atlas",
        inputs=("signal", "atlas"),
        explain=("prior",),
        min_genes=5,
    ),
    Kind(
        "atlas-lightgbm",
        "histexpr.estimators.atlas:AtlasLightGBM",
        "atlas",
        inputs=("signal", "atlas"),
        explain=("prior",),
        min_genes=20,
    ),
    Kind(
        "atlas-convnet",
        "histexpr.estimators.atlas_neural:AtlasConvNetEstimator",
        "atlas",
        inputs=("signal", "atlas"),
        network=True,
        explain=("attributions", "prior"),
        min_genes=10,
    ),
    Kind(
        "diff-ridge",
        "histexpr.estimators.diff_levels:DiffRidge",
        "differential",
        task="difference",
        inputs=("signal", "pair"),
        explain=("contributions",),
        min_genes=5,
    ),
    Kind(
        "diff-lightgbm",
        "histexpr.estimators.diff_levels:DiffLightGBM",
        "differential",
        task="difference",
        inputs=("signal", "pair"),
        explain=("contributions",),
        min_genes=20,
    ),
    Kind(
        "diff-convnet",
        "histexpr.estimators.diff_neural:DiffConvNetEstimator",
        "differential",
        task="difference",
        inputs=("signal", "pair"),
        network=True,
        explain=("attributions",),
        min_genes=10,
    ),
)


def _network_kind(name: str) -> Kind:
    net = NETWORKS[name]
    return Kind(
        name,
        NEURAL_ESTIMATOR,
        "network",
        network=True,
        explain=("attributions", "attention") if net.attention else ("attributions",),
        min_genes=int(net.min_genes),
        description=net.description,
    )


class _KindTable(Mapping):
    """name -> :class:`Kind`: the declared kinds, then every registered network (live)."""

    def __getitem__(self, name: str) -> Kind:
        if name in DECLARED:
            return DECLARED[name]
        if name in NETWORKS:
            return _network_kind(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        yield from DECLARED
        yield from (n for n in NETWORKS if n not in DECLARED)

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: Every kind, by name.
KIND_TABLE: Mapping[str, Kind] = _KindTable()


def kind_of(name: str) -> Kind:
    """The declaration of kind ``name``; an unknown name is a one-line error listing the kinds."""
    try:
        return KIND_TABLE[name]
    except (KeyError, TypeError):
        raise HistexprError(
            f"unknown model kind {name!r}; choose from {', '.join(KIND_TABLE)}"
        ) from None


def kind_names(
    *,
    task: str | None = None,
    family: str | None = None,
    network: bool | None = None,
    needs_atlas: bool | None = None,
    explainable: bool | None = None,
) -> tuple[str, ...]:
    """The kinds, in table order, that match every given declaration field."""
    out = []
    for k in KIND_TABLE.values():
        if task is not None and k.task != task:
            continue
        if family is not None and k.family != family:
            continue
        if network is not None and k.network != network:
            continue
        if needs_atlas is not None and k.needs_atlas != needs_atlas:
            continue
        if explainable is not None and k.explainable != explainable:
            continue
        out.append(k.name)
    return tuple(out)
