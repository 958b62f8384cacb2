"""``fashionzoo bench``: the run (:mod:`.run`), its backends (:mod:`.backends`, :mod:`.litert`), timing
(:mod:`.timing`), FLOPs and peak (:mod:`.flops`) and the summary (:mod:`.report`)."""
