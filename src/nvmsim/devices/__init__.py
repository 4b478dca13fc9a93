"""One cell's physics as pure tensor functions.

``noise`` (programming and read noise: Gaussian, conductance-dependent tables and
polynomials, 1/f, random telegraph), ``levels`` (finite, possibly nonuniform conductance
levels), ``faults`` (stuck-at cells, dead rows and columns, device-to-device range spread),
``drift`` (power-law drift, retention), ``jumptable`` (pulse responses for on-chip training),
``presets`` (cited device parameter sets; :mod:`nvmsim.config` validates them and reads user
preset files), ``behaviour`` and ``plot``
(a device's curves and figure)."""
