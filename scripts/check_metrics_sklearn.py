"""Independent check of difc's k-NN and mode metrics (kept out of CI).

    cargo test --release --lib metrics::calibration::export_for_independent_check -- --ignored
    python scripts/check_metrics_sklearn.py target/metrics_check     # needs numpy, scipy, scikit-learn

For each sampler of src/run/metrics/calibration.rs the export holds a real set (grid GMM, 3000
points) and a generated set (2500 points), plus difc's values. This script recomputes every
metric from the definitions with scikit-learn's exact k-d tree neighbours and SciPy's direct
pairwise distances (not the dot-product shortcut, whose rounding could move points across a ball's
boundary), and with the grid's centres and DLPM weights written out here, not read from difc.
It fails unless every value agrees to 1e-6.
"""

import pathlib
import sys

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

K = 5
CENTRES = np.array([[i, j] for i in (-1.0, 0.0, 1.0) for j in (-1.0, 0.0, 1.0)])
WEIGHTS = np.array([0.01, 0.1, 0.3, 0.2, 0.02, 0.15, 0.02, 0.15, 0.05])
STD = 0.1


def read_npy(path):
    return np.load(path).astype(np.float64)


def kth_radius(points):
    # The point itself is its own first neighbour at distance 0, so ask for k + 1.
    nn = NearestNeighbors(n_neighbors=K + 1, algorithm="kd_tree").fit(points)
    dist, _ = nn.kneighbors(points)
    return dist[:, K]


def knn_metrics(real, fake):
    r_real, r_fake = kth_radius(real), kth_radius(fake)
    d = cdist(real, fake)  # (N, M)
    in_real_ball = d <= r_real[:, None]
    in_fake_ball = d <= r_fake[None, :]
    return {
        "precision": in_real_ball.any(axis=0).mean(),
        "recall": in_fake_ball.any(axis=1).mean(),
        "density": in_real_ball.sum() / (K * fake.shape[0]),
        "coverage": in_real_ball.any(axis=1).mean(),
    }


def mode_metrics(fake):
    d = cdist(fake, CENTRES)
    nearest = d.argmin(axis=1)
    on = d[np.arange(len(fake)), nearest] <= 3 * STD
    counts = np.bincount(nearest[on], minlength=len(CENTRES))
    tv = 0.5 * np.abs(counts / on.sum() - WEIGHTS).sum() if on.sum() else 1.0
    return {"mode_fraction": on.mean(), "mode_weight_tv": tv}


def main():
    folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/metrics_check")
    ours = {}
    for line in (folder / "difc_metrics.txt").read_text().splitlines():
        name, key, value = line.split()
        ours[(name, key)] = float(value)
    worst = 0.0
    for name in sorted({n for n, _ in ours}):
        real = read_npy(folder / f"{name}_real.npy")
        fake = read_npy(folder / f"{name}_fake.npy")
        theirs = {**knn_metrics(real, fake), **mode_metrics(fake)}
        for key, value in theirs.items():
            diff = abs(value - ours[(name, key)])
            worst = max(worst, diff)
            print(f"{name:>9} {key:>15}: difc {ours[(name, key)]:.9f}  independent {value:.9f}  |diff| {diff:.1e}")
    print(f"largest difference {worst:.1e}")
    sys.exit(0 if worst <= 1e-6 else 1)


if __name__ == "__main__":
    main()
