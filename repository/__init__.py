"""The Triton model repository and everything that owns its shape.

* :mod:`sae.repository.layout`: folder and file names of a model set, version folders, manifests;
* :mod:`sae.repository.configs`: each model's ``config.pbtxt``, generated for the model's real dims;
* :mod:`sae.repository.pbtxt`: the text of a ``config.pbtxt`` (its header: description, batching policy, source);
* :mod:`sae.repository.templates`: the python-backend code copied into the python models;
* :mod:`sae.repository.validate`: a repository checked against its files without a server;
* :mod:`sae.repository.model_files`: one ONNX or TorchScript file checked against its config (for ``validate``);
* :mod:`sae.repository.install`: a staged model set checked and swapped in atomically, kept versions, rollback;
* :mod:`sae.repository.install_plan`: the plan and lock of an install's staging folder (a killed install is finished).

``sae export`` (``export/``) builds the artefacts (graphs, bank) into a staging folder this package lays out, then
asks it to install them; ``serving/`` only starts and stops the server on a repository. Nothing here imports torch.
"""
