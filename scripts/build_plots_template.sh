#!/usr/bin/env bash
# Build .dvc/plots_template.html: DVC's plot page with vega, vega-lite and vega-embed inlined, so that
# `dvc plots show` / `dvc plots diff` pages work offline (DVC's default page loads them from a CDN).
# The versions are the ones DVC's default page asks for. Needs npm; the output is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2 >/dev/null && for f in *.tgz; do
  mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done)
{
  printf '<!DOCTYPE html>\n<html>\n<head>\n    {refresh_tag}\n    <meta charset="utf-8">\n    <title>metahpo plots</title>\n'
  for lib in vega-5.20.2/package/build/vega.min.js vega-lite-5.2.0/package/build/vega-lite.min.js \
             vega-embed-6.18.2/package/build/vega-embed.min.js; do
    printf '    <script type="text/javascript">\n'
    cat "$work/$lib"
    printf '\n    </script>\n'
  done
  printf '    <style>\n        table { border-spacing: 15px; }\n    </style>\n</head>\n<body>\n    {plot_divs}\n</body>\n</html>\n'
} > .dvc/plots_template.html
echo "wrote .dvc/plots_template.html ($(wc -c < .dvc/plots_template.html) bytes)"
