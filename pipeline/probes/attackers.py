"""The attacker panel: every way the leakage probe tries to read a private attribute from embeddings.

Each attacker is fitted on features ``x`` (N, D) with class indices ``y`` (N,) and returns a function
from features to class probabilities (N, C). Panels (`LeakageConfig.panel`):

* ``fast`` (the default, and the anonymize gate's): the configured torch attackers (``linear``: softmax
  regression; ``mlp``: the paper's 2-layer MLP, both `LeakageConfig.attackers`) and ``knn_cosine``
  (cosine k-NN on embeddings centred at the training mean, distance-weighted votes);
* ``full``: fast plus ``logreg_cv`` (L2 logistic regression, its strength chosen by 3-fold
  cross-validation over whole videos of the attacker's own data), ``mlp_wide`` (512-256 ReLU MLP, early
  stopping on 15 % of its training clips) and ``hgb_pca`` (histogram gradient-boosted trees on the first
  32 principal components of standardised features, early stopping, balanced class weights),
  ``logreg_plain`` and ``mlp_plain`` (scikit-learn's ``LogisticRegression()`` and ``MLPClassifier()``
  with their defaults on standardised features: whatever a data team tries first). The
  leakage probe adds the oracle line on top (reported apart: it peeks at the test split).

scikit-learn fits run on one BLAS/OpenMP thread (`threadpool_limits`): the machines are small and
shared, and it keeps results independent of the caller's thread setting.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from pipeline.probes.config import FitConfig, LeakageConfig
from pipeline.probes.fit import fit_probe
from pipeline.probes.inputs import ProbeError

Predict = Callable[[np.ndarray], np.ndarray]  # features (N, D) -> probabilities (N, C)
# x (N, D), y (N,) class indices, group (N,) video index of each row, number of classes, seed
Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], Predict]

FAST = ("knn_cosine",)  # after the torch attackers of LeakageConfig.attackers
FULL = (*FAST, "logreg_cv", "mlp_wide", "hgb_pca", "logreg_plain", "mlp_plain")
KNN_NEIGHBOURS = 15
PCA_COMPONENTS = 32
LOGREG_CS = (1e-3, 1e-2, 1e-1, 1.0)


def _columns(model: object, proba: np.ndarray, num_classes: int) -> np.ndarray:
    """Spread a scikit-learn model's ``predict_proba`` (over the classes it saw) into (N, C) columns."""
    out = np.zeros((proba.shape[0], num_classes), dtype=np.float64)
    out[:, np.asarray(model.classes_, dtype=np.int64)] = proba  # type: ignore[attr-defined]
    return out


def _sklearn(make: Callable[[int], object]) -> Fitter:
    """A fitter around a scikit-learn pipeline built by ``make(seed)``."""

    def fit(x: np.ndarray, y: np.ndarray, group: np.ndarray, c: int, seed: int) -> Predict:
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

        model = make(seed)
        # an attacker stopped at its iteration budget is still an attacker; its score says how good
        with threadpool_limits(limits=1), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)  # type: ignore[attr-defined]

        def predict(features: np.ndarray) -> np.ndarray:
            with threadpool_limits(limits=1):
                return _columns(model, model.predict_proba(features), c)  # type: ignore[attr-defined]

        return predict

    return fit


def torch_attacker(cfg: FitConfig) -> Fitter:
    """A `fit_probe` attacker (linear or 2-layer MLP) with ``cfg``."""

    def fit(x: np.ndarray, y: np.ndarray, group: np.ndarray, c: int, seed: int) -> Predict:
        probe = fit_probe(x, y, cfg, num_classes=c)
        return lambda features: probe.predict_proba(features).astype(np.float64)

    return fit


def fit_logreg_cv(x: np.ndarray, y: np.ndarray, group: np.ndarray, c: int, seed: int) -> Predict:
    """Standardised L2 logistic regression; C from `LOGREG_CS` by log loss over folds of whole videos."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(3, len(np.unique(group)))
    cv = list(GroupKFold(n_splits=folds).split(x, y, group)) if folds >= 2 else 3
    model = LogisticRegressionCV(
        Cs=list(LOGREG_CS),
        cv=cv,
        scoring="neg_log_loss",
        class_weight="balanced",
        max_iter=300,
        l1_ratios=(0.0,),
        use_legacy_attributes=False,
    )
    return _sklearn(lambda s: make_pipeline(StandardScaler(), model))(x, y, group, c, seed)


def _knn(seed: int) -> object:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    unit = FunctionTransformer(lambda z: z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12))
    knn = KNeighborsClassifier(n_neighbors=KNN_NEIGHBOURS, weights="distance", algorithm="brute")
    return make_pipeline(StandardScaler(with_std=False), unit, knn)


def fit_knn(x: np.ndarray, y: np.ndarray, group: np.ndarray, c: int, seed: int) -> Predict:
    """Cosine k-NN (`KNN_NEIGHBOURS`, distance-weighted) on embeddings centred at the training mean."""
    if len(y) <= KNN_NEIGHBOURS:
        from sklearn.neighbors import KNeighborsClassifier

        return _sklearn(lambda s: KNeighborsClassifier(n_neighbors=len(y), metric="cosine"))(
            x, y, group, c, seed
        )
    return _sklearn(_knn)(x, y, group, c, seed)


def _mlp_wide(seed: int) -> object:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlp = MLPClassifier(
        hidden_layer_sizes=(512, 256),
        alpha=1e-3,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=10,
        max_iter=200,
        random_state=seed,
    )
    return make_pipeline(StandardScaler(), mlp)


def _hgb(seed: int) -> object:
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    trees = HistGradientBoostingClassifier(
        max_iter=200,
        early_stopping=True,
        validation_fraction=0.15,
        class_weight="balanced",
        random_state=seed,
    )
    return make_pipeline(StandardScaler(), PCA(n_components=PCA_COMPONENTS, random_state=seed), trees)


def fit_hgb(x: np.ndarray, y: np.ndarray, group: np.ndarray, c: int, seed: int) -> Predict:
    """Gradient-boosted trees on the first `PCA_COMPONENTS` principal components of standardised x."""
    if min(x.shape) <= PCA_COMPONENTS:
        from sklearn.ensemble import HistGradientBoostingClassifier

        return _sklearn(lambda s: HistGradientBoostingClassifier(random_state=s))(x, y, group, c, seed)
    return _sklearn(_hgb)(x, y, group, c, seed)


def _plain(kind: str) -> Callable[[int], object]:
    def make(seed: int) -> object:
        from sklearn.linear_model import LogisticRegression
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = LogisticRegression() if kind == "logreg" else MLPClassifier(random_state=seed)
        return make_pipeline(StandardScaler(), model)

    return make


EXTRA: dict[str, Fitter] = {
    "knn_cosine": fit_knn,
    "logreg_cv": fit_logreg_cv,
    "mlp_wide": _sklearn(_mlp_wide),
    "hgb_pca": fit_hgb,
    "logreg_plain": _sklearn(_plain("logreg")),
    "mlp_plain": _sklearn(_plain("mlp")),
}


def panel(cfg: LeakageConfig) -> dict[str, Fitter]:
    """The attackers of ``cfg.panel``, by name: ``cfg.attackers`` (torch) first, then the panel's extras."""
    names = FAST if cfg.panel == "fast" else FULL
    return {name: torch_attacker(a) for name, a in cfg.attackers.items()} | {n: EXTRA[n] for n in names}


def panel_names(cfg: LeakageConfig) -> tuple[str, ...]:
    """Names of the attackers of ``cfg.panel``, in the order they run."""
    return tuple(panel(cfg))


def fit_attacker(
    name: str, x: np.ndarray, y: np.ndarray, group: np.ndarray, num_classes: int, cfg: LeakageConfig
) -> Predict:
    """Fit the panel attacker ``name`` of ``cfg`` on ``x`` (N, D), ``y`` (N,), videos ``group`` (N,)."""
    attackers = {name: torch_attacker(a) for name, a in cfg.attackers.items()} | EXTRA
    if name not in attackers:
        raise ProbeError(f"unknown attacker {name!r}; known: {', '.join(attackers)}")
    return attackers[name](x, y, group, num_classes, cfg.seed)
