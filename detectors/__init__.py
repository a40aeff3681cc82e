"""Your own detectors: a module here with a function that builds the model, named in params as
``detect.detectors.<name>.target: detectors.<module>:<function>`` (docs/benchmark.md, "Your own detector").

This folder is a dvc.yaml dep of every stage that builds or loads a detector, so editing a model here
re-runs them.
"""
