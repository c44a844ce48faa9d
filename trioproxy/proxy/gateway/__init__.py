"""The gateway's policy in front of the relay: client keys and their limits
(:mod:`.gate`, :mod:`.keys`), and the settings (:mod:`.options`,
:mod:`.settings`, :mod:`.config`)."""
