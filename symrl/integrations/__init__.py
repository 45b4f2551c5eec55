"""The symmetric losses inside other RL libraries, computed by the same :mod:`symrl.losses` code.

- :mod:`symrl.integrations.sb3`: ``SA2C`` and ``SPPO``, drop-in Stable-Baselines3 algorithms
  (``pip install 'symrl[sb3]'``); :mod:`symrl.integrations.rl_zoo` runs them from RL Baselines3 Zoo
  hyperparameter files (``pip install 'symrl[zoo]'``).
- :mod:`symrl.integrations.torchrl`: ``SymmetricClipPPOLoss`` and ``SymmetricA2CLoss``, TorchRL loss
  modules that add a ``loss_reverse`` term (``pip install 'symrl[torchrl]'``).
- :mod:`symrl.integrations.trl`: ``SymmetricGRPOTrainer`` and ``SymmetricGRPOConfig``, Hugging Face TRL's
  ``GRPOTrainer`` with the symmetric per-token loss (``pip install 'symrl[trl]'``, docs/integrations/trl.md).
- :mod:`symrl.integrations.verl` and :mod:`symrl.integrations.openrlhf`: the token-level symmetric PPO loss
  as veRL's ``symmetric_ppo`` policy loss and as OpenRLHF's ``PolicyLoss`` (docs/rlhf.md).

Each module imports its library only when it is imported itself, so ``import symrl`` never needs them.
"""
