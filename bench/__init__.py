"""`make bench`: the flash sale, stock queries, memory, pipeline, POS ingest and rebuild, each
against a baseline measured in the same run, printed as one table and kept in
docs/benchmarks.md. Every process it starts is stopped again, on failure and Ctrl-C too."""
