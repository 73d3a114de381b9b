import dnachunker  # noqa: F401  (first: it sets how OpenMP threads wait, before torch loads)
