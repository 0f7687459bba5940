"""sociomap.reasoning runs on a GPU box with only torch + transformers: no geo or dask imports, ever."""

import subprocess
import sys
import textwrap

FORBIDDEN = ["rasterio", "geopandas", "dask", "shapely", "mercantile", "pyproj", "osmium"]


def test_reasoning_imports_and_runs_without_geo_stack(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from sociomap.reasoning import ReasonerConfig, TilePair, build_tiny_checkpoint, load_reasoner
        import openai, sociomap.reasoning.served  # the openai engine's client too
        for backend in ("sam2", "sa1"):
            d = build_tiny_checkpoint({str(tmp_path)!r} + "/" + backend, backend)
            sam = d / {{"sam2": "sam2", "sa1": "sam1.safetensors"}}[backend]
            r = load_reasoner(ReasonerConfig(model=str(d / "vlm"), sam=str(sam), greedy=True, max_new_tokens=4,
                                             offline=True, device="cpu"))
            tile = TilePair(np.zeros((56, 56, 3), np.uint8), np.zeros((56, 56, 3), np.uint8))
            assert r.segment([tile], ["park"])[0][0].mask.shape == (56, 56)
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
        print("FORBIDDEN:", loaded)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": "."})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "FORBIDDEN: []" in done.stdout
