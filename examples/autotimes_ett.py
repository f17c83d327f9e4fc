"""AutoTimes on ETTh1: zero-config forecasting with a frozen LLM, then in-context forecasting.

Run: ``python examples/autotimes_ett.py`` (about five minutes on two CPU cores; the LLM is the
offline SmolLM2-135M). ``--max-steps`` is the CPU training budget: AutoTimes' own recipe is
ten epochs over every window, which wants a GPU.
"""

# %% Imports and data: ETTh1 ships with seqprob (hourly, 7 columns).
from __future__ import annotations

import argparse

import numpy as np
import torch

from seqprob.forecasting import AutoTimesForecaster, ett_frame

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--max-steps", type=int, default=20)
parser.add_argument("--lm", default="smollm2-135m")
args = parser.parse_args()
torch.set_num_threads(1)  # fastest on a shared 2-core machine

frame = ett_frame("ETTh1")
train, test = frame.iloc[:8640], frame.iloc[8640:]

# %% Zero-config: the defaults are the paper's (segments of 96 rows, lookback 672, MLP
# projectors), over the default LLM. Only the projectors train; the LLM stays frozen.
model = AutoTimesForecaster(args.lm, max_steps=args.max_steps, batch_size=8)
model.fit(train)
print(f"trainable share of the parameters: {model.trainable_fraction_:.4%}")

# One model forecasts any horizon by rolling out segment by segment (overshoot trimmed).
forecast = model.predict(192)  # a DataFrame continuing the hourly index
print(forecast.head())
truth = test.iloc[:192].to_numpy()
print(f"MSE of the 192-step forecast (raw units): {np.mean((forecast.to_numpy() - truth)**2):.3f}")

# %% In-context forecasting: prepend prompt segments (here the four weeks before a short
# lookback, from the same series) to the lookback. Contexts shorter than the lookback are
# allowed: the model was trained at every position, i.e. on every context length up to 672.
# With this small CPU budget the projectors are barely trained, so whether the prompt helps
# on ETTh1 is not settled here; tests/test_autotimes.py has a task where it must.
S, starts = 96, np.arange(9000, 11000, 250)
lookback = np.stack([frame.to_numpy()[t - S: t] for t in starts])        # one segment
prompt = np.stack([frame.to_numpy()[t - 7 * S: t - S] for t in starts])  # six before it
target = np.stack([frame.to_numpy()[t: t + S] for t in starts])
plain = model.predict_windows(lookback, S)
prompted = model.predict_windows(lookback, S, prompt=prompt)
print(f"one-segment lookback:             MSE {np.mean((plain - target) ** 2):.3f}")
print(f"same lookback + 6 prompt segments: MSE {np.mean((prompted - target) ** 2):.3f}")
