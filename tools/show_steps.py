"""Per-step times of every row under a results directory (a quick look, for tools/launch_path.toml).

    python3 tools/show_steps.py RESULTS_DIR [RESULTS_DIR ...]
"""
import glob
import json
import sys

for f in sorted(f for d in sys.argv[1:] for f in glob.glob(f"{d}/**/*.jsonl", recursive=True)):
    print(f)
    for line in open(f):
        r = json.loads(line)
        c = r["cell"]
        ms = [round(s["seconds"] * 1e3, 1) for s in r.get("steps", [])]
        cpu = r["probes"]["phases"]["measured"]["cpu_percent"]["mean"] if r.get("probes") else None
        print(f"{c['mode']} b{c['batch']} s{c['seq']}: median {r['step_time_s']['median'] * 1e3:.1f} ms, "
              f"cpu {cpu:.0f}%, steps ms {ms}")
