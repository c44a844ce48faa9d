"""The gateway's policy: client keys and their limits (:mod:`.gate`, :mod:`.keys`,
:mod:`.tally`), path checks (:mod:`.paths`), routing by model and balancing
(:mod:`.routing`, :mod:`.balance`), and the settings (:mod:`.options`,
:mod:`.settings`, :mod:`.config`)."""
