"""Running a job: ``curve`` (backbone, cache, strategy, the loop over points), ``point`` (one point,
its engine and its record) and ``record`` (the record's schema, written atomically)."""
