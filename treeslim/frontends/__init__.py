"""Frontends: turn a fitted model object or a native model file into a :class:`~treeslim.Forest`.

``from_model`` dispatches on the object's type through a table keyed by
``"<top-level package>_<ClassName>"``, so no optional library is imported just to recognise a type.
``load`` recognises a file by its content, never by unpickling it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from .._errors import ModelFormatError, UnsupportedModelError
from ..forest import Forest

__all__ = ["from_model", "load"]

_XGB = "treeslim.frontends.xgboost:forest_from_xgboost"
_LGB = "treeslim.frontends.lightgbm:forest_from_lightgbm"
_SKL = "treeslim.frontends.sklearn:forest_from_sklearn"
_TL = "treeslim.frontends.treelite:forest_from_treelite"

_DISPATCH: dict[str, str] = {
    **{
        f"xgboost_{c}": _XGB
        for c in (
            "Booster",
            "XGBModel",
            "XGBClassifier",
            "XGBRegressor",
            "XGBRanker",
            "XGBRFClassifier",
            "XGBRFRegressor",
        )
    },
    **{
        f"lightgbm_{c}": _LGB
        for c in ("Booster", "LGBMModel", "LGBMClassifier", "LGBMRegressor", "LGBMRanker")
    },
    **{
        f"sklearn_{c}": _SKL
        for c in (
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
    },
    "treelite_Model": _TL,
}


def _resolve(target: str) -> Callable[[Any], Forest]:
    module, func = target.split(":")
    fn: Callable[[Any], Forest] = getattr(importlib.import_module(module), func)
    return fn


def from_model(obj: Any) -> Forest:
    """Convert a fitted model into a :class:`~treeslim.Forest`.

    Parameters
    ----------
    obj : fitted model
        ``xgboost.Booster`` / ``XGBClassifier`` / ``XGBRegressor`` / ``XGBRanker``,
        ``lightgbm.Booster`` / ``LGBMClassifier`` / ``LGBMRegressor`` / ``LGBMRanker``, scikit-learn
        decision trees, random forests, extra trees, gradient boosting and histogram gradient
        boosting, ``treelite.Model``, a ``FrozenEstimator`` around any of these, or a Forest.

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
    if isinstance(obj, Forest):
        return obj
    if type(obj).__name__ == "FrozenEstimator" and hasattr(obj, "estimator"):
        return from_model(obj.estimator)
    for cls in type(obj).__mro__:
        key = f"{cls.__module__.split('.')[0]}_{cls.__name__}"
        if key in _DISPATCH:
            return _resolve(_DISPATCH[key])(obj)
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


def load(path: str | os.PathLike[str]) -> Any:
    """Read a model file: XGBoost JSON / UBJSON, LightGBM model text, Treelite checkpoint, ``.tslim``.

    The format is recognised from the file's content. Files are only read, never unpickled.
    Returns a :class:`~treeslim.Forest`, or a :class:`treeslim.nn.MLP` for an MLP ``.tslim`` file.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    if not data:
        raise ModelFormatError(f"{path}: the file is empty.")
    head = data[:256].lstrip()
    if head.startswith(b"TSLNN"):
        from ..nn._format import load_mlp_bytes

        return load_mlp_bytes(data, name=path)
    if head.startswith(b"TSLIM"):
        from ..tslim import load_tslim_bytes

        return load_tslim_bytes(data, name=path)
    try:
        if head.startswith(b"{"):
            from .xgboost import forest_from_xgboost_bytes

            return forest_from_xgboost_bytes(data)
        if head.startswith((b"tree\n", b"tree\r\n", b"version=")):
            from .lightgbm import forest_from_lightgbm_text

            return forest_from_lightgbm_text(data.decode("utf-8", errors="strict"))
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{path}: not a LightGBM model text file ({exc}).") from exc
    from .treelite import forest_from_treelite_checkpoint, looks_like_treelite_checkpoint

    if looks_like_treelite_checkpoint(data):
        return forest_from_treelite_checkpoint(data, name=path)
    raise ModelFormatError(
        f"{path}: not a model file treeslim can read (XGBoost JSON/UBJSON, LightGBM model text,"
        " Treelite checkpoint or .tslim). Pickled models are never loaded: export the model with"
        " its library's save_model first."
    )
