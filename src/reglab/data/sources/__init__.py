"""The registered data sets; importing this package registers them all."""

from reglab.data.sources import cifar, mnist, mnist1d, mnist5k, synthetic  # noqa: F401  (registration)
