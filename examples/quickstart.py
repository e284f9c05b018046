"""What a researcher does first with grokjax, from Python: train a weight-decay sweep, compare
when each weight decay groks, and plot the median test-accuracy curves.

    python examples/quickstart.py quickstart.png    # 3 wd x 4 seeds x 600 epochs: 12 runs, about 2 minutes on 2 cores
"""

import sys

import matplotlib.pyplot as plt

import grokjax


def main(figure: str = "quickstart.png", **options) -> grokjax.Results:
    results = grokjax.run(**{"wd": [0, 1e-4, 1e-3], "seeds": 4, "epochs": 600, "progress": True, **options})
    print(results.groups[["wd", "runs", "grokked", "grok_median", "grok_ci_low", "grok_ci_high"]].to_string(index=False))

    median = results.to_xarray().test_acc.median("seed")  # over seeds, per wd and epoch
    fig, ax = plt.subplots(figsize=(6, 4))
    for wd in median.wd.values:
        ax.plot(median.epoch, median.sel(wd=wd), label=f"wd {wd:g}")
    ax.set(xlabel="epoch", ylabel="median test accuracy", title="grokjax quickstart")
    ax.legend()
    fig.savefig(figure, dpi=100)
    return results


if __name__ == "__main__":
    main(*sys.argv[1:2])
