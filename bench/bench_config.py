#!/usr/bin/env python3
"""Benchmark configurations derived from examples/pgveil.yaml (the demo policy).

  bench_config.py PGPORT plain   the demo policy (classify, roles, masking) without limits or canaries
  bench_config.py PGPORT rules   plain + limits on every role (never reached by pgbench), every
                                 exfiltration rule set to block, enumeration and distinct-rows
                                 rules, and canaries: the cost of checking them all
"""
import pathlib
import re
import sys

port, mode = sys.argv[1], sys.argv[2]
root = pathlib.Path(__file__).resolve().parent.parent
y = (root / "examples" / "pgveil.yaml").read_text()
y = y.replace("port: 54320", f"port: {port}")
# Plaintext to the server, as pgbouncer's default (server_tls_sslmode = disable): the same work
# for both proxies, and PostgreSQL (sharing the cores) does not encrypt for one of them only.
y = y.replace("  tls: prefer ", "  tls: disable")
y = y.replace("listen: 127.0.0.1:6432", "listen: 127.0.0.1:0").replace("listen: 127.0.0.1:9930", "listen: 127.0.0.1:0")
# Drop every role's limits block (and `limits: {}`), and the canaries.
y = re.sub(r"\n    limits: \{\}[^\n]*", "", y)
y = re.sub(r"\n    limits:\n(      [^\n]*\n?)+", "\n", y)
y = re.sub(r"  values: \[[^\]]*\]", "  values: []", y)
if mode == "rules":
    y = y.replace("  default:                      # every other role (intern, ...): everything classified masked\n"
                  "    mask:\n      \"*\": redact\n",
                  "  default:\n    mask:\n      \"*\": redact\n    limits:\n      rows_per_query: 1000000\n"
                  "      bytes_per_query: 1GB\n      rows_per_session: 1000000000000\n      window: 1m\n"
                  "      rows_per_window: 1000000000000\n      rows_per_window_per_client: 1000000000000\n"
                  "      large_pull_rows: 100000\n")
    for rule in ("unbounded_read", "select_star", "copy_to"):
        y = re.sub(rf"  {rule}: alert", f"  {rule}: block", y)
    y = y.replace("    action: alert\n    max_queries: 50", "    action: block\n    max_queries: 50")
    y = y.replace("  values: []", '  values: ["joseph.dubois4242@example.net", "canary.one@example.org", "+33 6 00 00 00 01"]')
    assert "rows_per_query: 1000000" in y and "unbounded_read: block" in y and "canary.one" in y
elif mode != "plain":
    sys.exit("mode: plain or rules")
sys.stdout.write(y)
