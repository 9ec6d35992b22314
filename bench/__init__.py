"""The load benchmark of the seat booking service: ``python -m bench`` (``make bench``).

It lives outside the product: it starts the production web server as the
Procfile does, drives it over HTTP, runs pgbench beside it, and reads and
writes the product's tables (through Django) to set up and check its data.
The product never imports it. Method, options and figures: docs/benchmark.md.

- runner: the whole run and its report;
- loadclient: the asyncio HTTP/1.1 load client;
- pgbench: the fixed pgbench script (the least SQL a row-locked, audited booking needs);
- cpu: CPU time per process group, from /proc.
"""
