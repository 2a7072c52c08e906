"""The linear probe against scikit-learn. Run by `tests/probe_sklearn.rs`:

    PYTHON crates/selfaware-activations/reference/probe_sklearn.py DATA.json

DATA holds `x` (rows), `y` (0/1), `c` and `fold` (each row's fold, as selfaware assigned it).
Fits `StandardScaler` + `LogisticRegression(C=c)` (L2, intercept unpenalised, lbfgs to a tight
tolerance) on all rows, and cross-validates over the given folds (scaler fitted on each
training fold). Prints JSON: the full fit's `coef` (on standardised features) and `intercept`,
and the cross-validated `correct` count.
"""

import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

data = json.load(open(sys.argv[1]))
x = np.array(data["x"], dtype=np.float64)
y = np.array(data["y"], dtype=np.int64)
fold = np.array(data["fold"])
c = data["c"]


def fit(xs, ys):
    return LogisticRegression(C=c, tol=1e-12, max_iter=100_000).fit(xs, ys)


scaler = StandardScaler().fit(x)
full = fit(scaler.transform(x), y)
correct = 0
for k in sorted(set(fold.tolist())):
    train, test = fold != k, fold == k
    s = StandardScaler().fit(x[train])
    m = fit(s.transform(x[train]), y[train])
    correct += int((m.predict(s.transform(x[test])) == y[test]).sum())
print(json.dumps({"coef": full.coef_[0].tolist(), "intercept": float(full.intercept_[0]),
                  "correct": correct}))
