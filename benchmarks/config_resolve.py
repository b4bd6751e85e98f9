"""Benchmark the static config resolver against ``mmengine.Config.fromfile`` on the same configs.

    python benchmarks/config_resolve.py              # the fixtures, 20 alternating runs each
    python benchmarks/config_resolve.py CONFIG.py... # your own configs
    python benchmarks/config_resolve.py --mmdet      # every config the installed mmdet wheel ships (1 run each)

Both sides run in this one process, alternating, after one warm-up each; mmengine resolves with
``import_custom_modules=False`` (it executes the config; bn2gn only reads it). The table shows the
median wall time per config and the ratio bn2gn / mmengine. Needs mmengine (``bn2gn[openmmlab]``).
Exit status: 0 when every static resolution takes under a second and agrees with mmengine's result.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT = [
    ROOT / "fixtures/mmconfig/cmt/projects/configs/fusion/cmt_aqr_voxel0100_r50_800x320_cbgs.py",
    ROOT / "fixtures/mmconfig/delete/swin_child.py",
    ROOT / "fixtures/mmconfig/custom_imports/r50_gn_neck.py",
]


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def main(argv) -> int:
    from mmengine.config import Config

    from bn2gn.openmmlab import resolve_config

    runs = 20
    if argv == ["--mmdet"]:
        import mmdet

        root = Path(mmdet.__file__).parent / ".mim" / "configs"
        return corpus(sorted(p for p in root.rglob("*.py") if "_base_" not in p.parts))
    configs = [Path(a) for a in argv] or DEFAULT
    ok = True
    print(f"{'config':<48} {'bn2gn ms':>9} {'mmengine ms':>12} {'ratio':>6}  same")
    for path in configs:
        ours = lambda path=path: resolve_config(path).data  # noqa: E731
        theirs = lambda path=path: Config.fromfile(str(path), import_custom_modules=False).to_dict()  # noqa: E731
        same = _plain(ours()) == _plain(theirs())
        times = {"ours": [], "theirs": []}
        for _ in range(runs):
            for name, func in (("ours", ours), ("theirs", theirs)):
                start = time.perf_counter()
                func()
                times[name].append(time.perf_counter() - start)
        a, b = statistics.median(times["ours"]), statistics.median(times["theirs"])
        ok = ok and same and a < 1.0
        print(f"{path.name[:48]:<48} {a * 1e3:>9.2f} {b * 1e3:>12.2f} {a / b:>6.2f}  {same}")
    return 0 if ok else 1


def corpus(files) -> int:
    """One run per config: how many resolve statically, agree with mmengine, and the total times."""
    import contextlib
    import io
    import warnings

    from mmengine.config import Config

    from bn2gn.core.errors import SourceError
    from bn2gn.openmmlab import resolve_config

    counts = {"same": 0, "different": 0, "refused": 0, "mmengine fails": 0}
    ours_s = theirs_s = 0.0
    for path in files:
        start = time.perf_counter()
        try:
            ours = resolve_config(path).data
        except SourceError:
            counts["refused"] += 1
            continue
        ours_s += time.perf_counter() - start
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                theirs = Config.fromfile(str(path), import_custom_modules=False).to_dict()
        except Exception:  # noqa: BLE001
            counts["mmengine fails"] += 1
            continue
        theirs_s += time.perf_counter() - start
        counts["same" if _plain(ours) == _plain(theirs) else "different"] += 1
    print(
        f"{len(files)} configs: {counts}; static {ours_s:.1f} s, mmengine {theirs_s:.1f} s "
        f"(ratio {ours_s / max(theirs_s, 1e-9):.2f}, over the configs both resolved)"
    )
    return 0 if counts["different"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
