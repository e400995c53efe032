"""The model zoo: a registry of builders (`register_model`, `build_model`, `available_models`).

Registered models (`reglab models` lists them with their options):

* `mlp`         — fully connected network, the dropout-theory model (plain nn.Sequential);
* `resmlp`      — residual MLP for vector data (stochastic depth on MNIST-1D);
* `deeper_cnn`  — the seed study's 3-block CNN, residual by projection shortcuts;
* `resnet20`    — CIFAR ResNet-20 (He et al. 2016);
* `resnet18`    — ResNet-18, CIFAR variant;
* `vgg9`        — 9-weight-layer VGG (FedMA variant);
* `transformer` — small Transformer encoder for sequences (pre-/post-LN).

Every model is an ``nn.Sequential`` subclass with ``residual_blocks()`` → its `Residual` modules in
depth order. Dropout, stochastic-depth gates and DropBlock are inserted only where their
probability is > 0, and every forward is free of data-dependent Python control flow, so models run
under ``torch.func.vmap(..., randomness="different")`` over stacked copies (BatchNorm in training
mode too, when its buffers are stacked with the parameters: ``torch.func.stack_module_state``).
"""

from reglab.models import deeper_cnn, mlp, resmlp, resnet, transformer, vgg  # noqa: F401  (registration)
from reglab.models.common import ZooModel
from reglab.models.registry import ModelInfo, available_models, build_model, get_model_info, register_model

__all__ = ["ModelInfo", "ZooModel", "available_models", "build_model", "get_model_info", "register_model"]
