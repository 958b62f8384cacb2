"""``--engine ray``: connecting (:mod:`.cluster`), batch prediction with Ray Data (:mod:`.predict`), searches and seed
sweeps as Ray Tune trials (:mod:`.tune`). Ray is imported only when a function needs it."""
