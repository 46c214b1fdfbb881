#!/usr/bin/env bash
# Render the HTML report for a unidirectional model, a bidirectional model and the demo, then screenshot each page
# in headless chromium (Debian: apt-get install -y chromium) so a person can look at the PNGs.
# Usage: scripts/screenshot_html.sh [OUT_DIR]   (default: /tmp/gradhealth-screens)
set -euo pipefail
out="${1:-/tmp/gradhealth-screens}"
python="${PYTHON:-python}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
    echo "screenshot_html.sh: no chromium found; install it with: apt-get install -y chromium" >&2
    exit 2
fi
mkdir -p "$out"
"$python" - "$out" <<'PY'
import sys
from pathlib import Path

import torch

import gradhealth
from gradhealth.demo import run_demo
from gradhealth.plot import plot_report
from gradhealth.render.html import render_html

out = Path(sys.argv[1])
torch.manual_seed(0)
uni = gradhealth.audit(torch.nn.LSTM(8, 32, batch_first=True), seq_len=100, batch_size=8)
bi = gradhealth.audit(torch.nn.GRU(8, 32, batch_first=True, bidirectional=True), seq_len=100, batch_size=8)
(out / "unidirectional.html").write_text(render_html(uni), encoding="utf-8")
(out / "bidirectional.html").write_text(render_html(bi), encoding="utf-8")
reports = run_demo()
(out / "demo.html").write_text(render_html(reports, title="gradhealth demo"), encoding="utf-8")
plot_report(uni, out / "plot-unidirectional.png")
plot_report(bi, out / "plot-bidirectional.png")
PY
for name in unidirectional bidirectional demo; do
    "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" \
        --screenshot="$out/$name.png" --window-size=1200,2000 "file://$out/$name.html" >/dev/null 2>&1
    echo "$out/$name.png"
done
ls "$out"/plot-*.png
