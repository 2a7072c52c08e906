#!/usr/bin/env bash
# Screenshot a selfaware HTML report with headless Chromium, to check its layout by eye or
# in a test.
#
# Usage: scripts/report-screenshot.sh REPORT.html OUT.png [WIDTH,HEIGHT]
#
# Needs a Chromium binary: `chromium` (Debian: apt-get install -y chromium), or set CHROMIUM
# to another one (chromium-browser, google-chrome). The page is loaded from disk; the report
# is self-contained, so nothing is fetched. The default window is 1400x3000 pixels.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
    exit 2
fi
report=$1
out=$2
size=${3:-1400,3000}

if [[ ! -f "$report" ]]; then
    echo "error: report not found: $report" >&2
    exit 1
fi

browser=${CHROMIUM:-}
if [[ -z "$browser" ]]; then
    for candidate in chromium chromium-browser google-chrome; do
        if command -v "$candidate" >/dev/null 2>&1; then
            browser=$candidate
            break
        fi
    done
fi
if [[ -z "$browser" ]]; then
    echo "error: no chromium binary found; hint: apt-get install -y chromium, or set CHROMIUM" >&2
    exit 1
fi

report_abs=$(realpath "$report")
out_dir=$(dirname "$out")
mkdir -p "$out_dir"
out_abs="$(realpath "$out_dir")/$(basename "$out")"
rm -f "$out_abs"

# A throwaway profile, so runs do not share state or lock each other out.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --disable-extensions --user-data-dir="$profile" \
    --screenshot="$out_abs" --window-size="$size" "file://$report_abs" >/dev/null 2>&1 || true

if [[ ! -s "$out_abs" ]]; then
    echo "error: $browser wrote no screenshot to $out_abs" >&2
    exit 1
fi
echo "$out_abs"
