"""How much data does grokking need? Train every training fraction in one compiled program,
print when each fraction generalises, and draw the epochs against the fraction.

    python examples/train_fraction.py train_frac.png   # 5 fractions x 3 seeds x 1000 epochs: about 10 minutes on 2 cores
"""

import sys

import grokjax


def main(figure: str = "train_frac.png", **options) -> grokjax.Results:
    results = grokjax.run(**{"train_frac": [0.3, 0.4, 0.5, 0.6, 0.7], "wd": 1e-3, "seeds": 3, "epochs": 1000,
                             "geometry_every": 0, "progress": True, **options})
    summary = results.summary
    # the study's grokking rule and Power et al.'s plain first crossing of 95 % test accuracy, per fraction
    table = summary.groupby("train_frac").agg(runs=("seed", "size"), grokked=("grokked", "sum"),
                                              grok_median=("grok_epoch", "median"),
                                              generalised_median=("generalised_epoch", "median"))
    print(table.to_string())
    results.plot.epochs_vs("train_frac").savefig(figure, dpi=100)
    return results


if __name__ == "__main__":
    main(*sys.argv[1:2])
