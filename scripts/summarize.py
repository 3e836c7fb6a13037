"""Print one line per results.json under a dir: the figures the README quotes.

Usage: python scripts/summarize.py logs/bars
"""

import json
import sys
from pathlib import Path


def main(root: str) -> None:
    rows = []
    for path in sorted(Path(root).rglob("results.json")):
        r = json.loads(path.read_text())
        t = r["teacher"]["test"]
        s = r.get("student", {})
        rows.append(
            (
                path.parent.name,
                r.get("run_name"),
                f"{r['accuracy']:.2f}",
                f"{r['macro_f1']:.2f}",
                f"{t['macro_f1']:.2f}",
                f"{100 * r['retention']['macro_f1']:.1f}%" if r.get("retention") else "-",
                f"{r.get('speedup') or 0:.2f}x",
                f"{r.get('compression_ratio') or 0:.2f}x",
                f"{r.get('size_mb') or 0:.1f}",
                f"{r.get('latency_p50_ms') or 0:.2f}",
                f"{s.get('train_time_s', 0):.0f}",
                f"{r['wall_time_s']:.0f}",
            )
        )
    head = (
        "run",
        "name",
        "acc",
        "macro-F1",
        "teacher F1",
        "retention",
        "speedup",
        "compr.",
        "MB",
        "p50 ms",
        "student fit s",
        "wall s",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "logs")
