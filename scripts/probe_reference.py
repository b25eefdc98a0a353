"""Reference fits of scikit-learn's LogisticRegression and Ridge, for tests/probe.rs (the
`probe` method's solver, src/method/probe.rs).

Writes tests/fixtures/probe_reference.json: small synthetic problems (L2-normalised features,
labels from a noisy linear rule), each with

  x (n x d), y (class indices or real targets), and per C (alpha = 1/C for ridge):
  coef, intercept     LogisticRegression(C=C, tol=1e-14, max_iter=100000): binary problems have one
                      coefficient row, multinomial C rows (intercepts centred to sum 0: the
                      softmax does not see a common shift); Ridge(alpha=1/C) for regression
  probabilities       predict_proba on x_test (logistic only)

The logistic references are scikit-learn's newton-cholesky solution, checked against its
newton-cg (to 1e-9) and its default lbfgs (to 1e-6: lbfgs stops on a relative decrease of the
objective of 64 eps, a little before the optimum), so the fixture is the optimum of the
objective, not one solver's stopping point.

Usage (needs numpy and scikit-learn; e.g. `pip install scikit-learn` into the venv of
scripts/reference/venv.sh):
  python scripts/probe_reference.py [OUT]
"""
import json
import os
import sys
import warnings

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression, Ridge

out = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(
    os.path.dirname(__file__), "..", "tests", "fixtures", "probe_reference.json"))

rng = np.random.default_rng(7)
# newton-cg's line search warns near the optimum, where the objective stops changing.
warnings.filterwarnings("ignore")


def features(n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def classes_of(x, k):
    # A noisy linear rule, every class present.
    w = rng.normal(size=(x.shape[1], k))
    s = x @ w * 3 + rng.normal(size=(x.shape[0], k))
    y = s.argmax(1)
    y[:k] = np.arange(k)
    return y


def r(a):
    return np.asarray(a, dtype=float).round(17).tolist()


def logistic_case(name, n, d, k, cs):
    x, xt = features(n, d), features(3, d)
    y = classes_of(x, k)
    fits = []
    for c in cs:
        fitted = {
            solver: LogisticRegression(C=c, tol=1e-14, max_iter=100000, solver=solver).fit(x, y)
            for solver in ["newton-cholesky", "newton-cg", "lbfgs"]
        }

        def params(m):
            b = m.intercept_ - (m.intercept_.mean() if k > 2 else 0.0)
            return m.coef_, b

        coef, intercept = params(fitted["newton-cholesky"])
        for solver, tol in [("newton-cg", 1e-9), ("lbfgs", 1e-6)]:
            w, b = params(fitted[solver])
            gap = max(np.abs(coef - w).max(), np.abs(intercept - b).max())
            assert gap < tol, f"{name} C={c}: newton-cholesky and {solver} differ by {gap}"
            print(f"{name} C={c}: newton-cholesky vs {solver}: {gap:.1e}")
        probabilities = fitted["newton-cholesky"].predict_proba(xt)
        fits.append({"C": c, "coef": r(coef), "intercept": r(intercept), "probabilities": r(probabilities)})
    return {"name": name, "kind": "logistic", "classes": k, "x": r(x), "y": y.tolist(), "x_test": r(xt), "fits": fits}


def ridge_case(name, n, d, cs):
    x = features(n, d)
    y = x @ rng.normal(size=d) * 2 + 0.5 + 0.1 * rng.normal(size=n)
    fits = []
    for c in cs:
        m = Ridge(alpha=1.0 / c).fit(x, y)
        fits.append({"C": c, "coef": r([m.coef_]), "intercept": r([m.intercept_])})
    return {"name": name, "kind": "ridge", "x": r(x), "y": r(y), "fits": fits}


cases = [
    logistic_case("binary", 20, 4, 2, [0.1, 10.0]),
    logistic_case("three classes", 20, 4, 3, [0.1, 10.0]),
    # More dimensions than examples, as few-shot features are (the solver works in their span).
    logistic_case("wide, three classes", 8, 12, 3, [1.0, 10.0]),
    logistic_case("wide, binary", 6, 12, 2, [100.0]),
    ridge_case("ridge", 16, 4, [0.1, 10.0]),
    ridge_case("wide ridge", 6, 10, [1.0]),
]
doc = {"sklearn": sklearn.__version__, "numpy": np.__version__, "cases": cases}
with open(out, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
    f.write("\n")
print(f"wrote {out} ({os.path.getsize(out)} bytes)")
