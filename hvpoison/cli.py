"""The ``hvpoison`` command line.

``hvpoison check``   verifies the derivative engine on random problems against finite
                     differences and prints a table (the engine's self-test a user can run
                     on any machine in a few seconds).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np


def _fd(f, x, u, h=1e-5):
    return (f(x + h * u) - f(x - h * u)) / (2 * h)


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-300))


def check(seed: int = 0, n: int = 50, d: int = 10) -> list:
    """Relative errors of every derivative against central differences, per model/penalty.

    Returns rows ``(model, penalty, quantity, relative error)``.
    """
    import hvpoison as hv

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.float64)
    rows = []
    for model in (hv.LR(d), hv.MLP((d, 8, 4, 1), slope=0.1)):
        for penalty, lam in ((None, None), ("l2", -1.0), ("l1", -2.0)):
            obj = hv.Objective(model, penalty)
            w = rng.normal(size=model.n_params) * 0.5
            v, U = rng.normal(size=model.n_params), rng.normal(size=X.shape)
            pt = obj.at(w, X, y, lam)
            name = f"{type(model).__name__}"
            rows.append((name, penalty, "grad . v",
                         _rel(pt.grad() @ v, _fd(lambda w_: obj.loss(w_, X, y, lam), w, v))))
            rows.append((name, penalty, "H v",
                         _rel(pt.hvp(v), _fd(lambda w_: obj.grad(w_, X, y, lam), w, v))))
            rows.append((name, penalty, "<M_X^T v, U>",
                         _rel(np.sum(pt.hvp_xw(v) * U),
                              _fd(lambda X_: v @ obj.grad(w, X_, y, lam), X, U))))
            if lam is not None:
                rows.append((name, penalty, "M_lam^T v",
                             _rel(pt.hvp_lw(v), _fd(lambda l_: v @ obj.grad(w, X, y, l_),
                                                    lam, 1.0))))
    return rows


def _cmd_check(args) -> int:
    t0 = time.perf_counter()
    rows = check(seed=args.seed)
    worst = max(r[3] for r in rows)
    print(f"{'model':<5} {'penalty':<7} {'quantity':<14} {'rel. error vs finite diff.':>27}")
    for model, penalty, quantity, err in rows:
        print(f"{model:<5} {str(penalty):<7} {quantity:<14} {err:>27.2e}")
    ok = worst <= 1e-6
    print(f"\n{'OK' if ok else 'FAILED'}: worst relative error {worst:.2e} "
          f"(tolerance 1e-6) in {time.perf_counter() - t0:.2f} s")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="hvpoison", description=(
        "Optimal poisoning attacks that anticipate hyperparameter learning."))
    p.add_argument("--version", action="version", version=f"hvpoison {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    c = sub.add_parser("check", help="verify the derivative engine against finite differences")
    c.add_argument("--seed", type=int, default=0, help="seed of the random problems (default 0)")
    c.set_defaults(func=_cmd_check)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"hvpoison {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hvpoison {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
