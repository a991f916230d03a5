"""Frontends: turn a fitted model object or a native model file into a :class:`~treeslim.Forest`.

``from_model`` dispatches on the object's type through a table keyed by
``"<top-level package>_<ClassName>"`` (walking the MRO), so no optional library is imported just to
recognise a type. ``from_bytes`` recognises a model file by its content, never by unpickling it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from treeslim._utils import unwrap
from treeslim.errors import ModelFormatError, UnsupportedModelError
from treeslim.formats import load_tslim_bytes
from treeslim.frontends._lightgbm import forest_from_lightgbm, forest_from_lightgbm_text
from treeslim.frontends._sklearn import forest_from_sklearn, sklearn_tree_arrays
from treeslim.frontends._treelite import (
    forest_from_treelite,
    forest_from_treelite_checkpoint,
    looks_like_treelite_checkpoint,
)
from treeslim.frontends._xgboost import (
    forest_from_xgboost,
    forest_from_xgboost_bytes,
    forest_from_xgboost_dict,
)
from treeslim.frontends._xgboost_legacy import (
    forest_from_xgboost_legacy_binary,
    looks_like_legacy_xgboost,
)
from treeslim.ir import Forest

__all__ = [
    "forest_from_lightgbm",
    "forest_from_lightgbm_text",
    "forest_from_sklearn",
    "forest_from_treelite",
    "forest_from_treelite_checkpoint",
    "forest_from_xgboost",
    "forest_from_xgboost_bytes",
    "forest_from_xgboost_dict",
    "from_bytes",
    "from_model",
    "sklearn_tree_arrays",
]

_SKLEARN_CLASSES = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
)
_XGBOOST_CLASSES = ("Booster", "XGBModel", "XGBClassifier", "XGBRegressor", "XGBRanker",
                    "XGBRFClassifier", "XGBRFRegressor")  # fmt: skip
_LIGHTGBM_CLASSES = ("Booster", "LGBMModel", "LGBMClassifier", "LGBMRegressor", "LGBMRanker")

_DISPATCH: dict[str, Callable[[Any], Forest]] = {
    **{f"xgboost_{c}": forest_from_xgboost for c in _XGBOOST_CLASSES},
    **{f"lightgbm_{c}": forest_from_lightgbm for c in _LIGHTGBM_CLASSES},
    **{f"sklearn_{c}": forest_from_sklearn for c in _SKLEARN_CLASSES},
    "treelite_Model": forest_from_treelite,
}


def from_model(obj: Any, *, missing: float | None = None) -> Forest:
    """Convert a fitted model into a :class:`~treeslim.Forest`.

    Parameters
    ----------
    obj : fitted model
        ``xgboost.Booster`` / ``XGBClassifier`` / ``XGBRegressor`` / ``XGBRanker``,
        ``lightgbm.Booster`` / ``LGBMClassifier`` / ``LGBMRegressor`` / ``LGBMRanker``, scikit-learn
        decision trees, random forests, extra trees, gradient boosting and histogram gradient
        boosting, ``treelite.Model``, a ``FrozenEstimator`` around any of these, or a Forest.
    missing : float, optional
        XGBoost only: the value the model is scored with as ``missing`` besides NaN (a Booster
        does not store it; the scikit-learn wrappers' own ``missing`` is read without it). Rows
        holding it then predict exactly as XGBoost predicts them.

    Returns
    -------
    Forest

    Raises
    ------
    UnsupportedModelError
        For a model kind or feature the IR cannot hold; the message says what to do instead.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.ensemble import RandomForestRegressor
    >>> import treeslim
    >>> X, y = load_diabetes(return_X_y=True)
    >>> rf = RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
    >>> forest = treeslim.from_model(rf)
    >>> forest.n_trees, forest.max_depth
    (5, 3)
    >>> bool(abs(forest.predict(X) - rf.predict(X)).max() < 1e-9)
    True
    """
    obj = unwrap(obj)
    if isinstance(obj, Forest):
        return obj
    for cls in type(obj).__mro__:
        reader = _DISPATCH.get(f"{cls.__module__.split('.')[0]}_{cls.__name__}")
        if reader is not None and missing is not None:
            if reader is not forest_from_xgboost:
                raise UnsupportedModelError(
                    f"from_model(..., missing={missing!r}) applies to XGBoost models only; a"
                    f" {type(obj).__name__} has its own missing-value settings, read from it."
                )
            return forest_from_xgboost(obj, missing=missing)
        if reader is not None:
            return reader(obj)
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if type(obj).__name__ == "Pipeline":
        raise UnsupportedModelError(
            f"{name}: pass the pipeline's last step (pipeline[-1]) to from_model, or the whole"
            " pipeline to treeslim.compress, which keeps the preprocessing steps."
        )
    raise UnsupportedModelError(
        f"Cannot convert a {name}: treeslim reads XGBoost, LightGBM, scikit-learn tree ensembles"
        " and treelite.Model objects."
    )


def from_bytes(data: bytes, name: str = "<bytes>", *, missing: float | None = None) -> Forest:
    """Read the bytes of a tree model file: XGBoost JSON / UBJSON (or a legacy binary model,
    through Treelite), LightGBM model text, Treelite checkpoint or forest ``.tslim``; the format
    is recognised from the content. ``missing`` is :func:`from_model`'s, for XGBoost JSON /
    UBJSON files (a saved model does not store it)."""
    head = data[:256].lstrip()
    is_json = head.startswith(b"{")
    if missing is not None and not is_json:
        raise UnsupportedModelError(
            f"{name}: missing={missing!r} applies to XGBoost JSON / UBJSON models only; this file"
            " is another format, whose missing-value settings are read from the file."
        )
    if head.startswith(b"TSLIM"):
        return load_tslim_bytes(data, name=name)
    try:
        if is_json:
            return forest_from_xgboost_bytes(data, missing=missing)
        if head.startswith((b"tree\n", b"tree\r\n", b"version=")):
            return forest_from_lightgbm_text(data.decode("utf-8", errors="strict"))
    except ModelFormatError as exc:
        raise ModelFormatError(f"{name}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{name}: not a LightGBM model text file ({exc}).") from exc
    if looks_like_treelite_checkpoint(data):
        return forest_from_treelite_checkpoint(data, name=name)
    if looks_like_legacy_xgboost(data):
        return forest_from_xgboost_legacy_binary(data, name=name)
    raise ModelFormatError(
        f"{name}: not a model file treeslim can read (XGBoost JSON/UBJSON, LightGBM model text,"
        " Treelite checkpoint or .tslim). Pickled models are never loaded: export the model with"
        " its library's save_model first."
    )
