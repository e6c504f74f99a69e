"""The torch side: networks, training, conversions, runtimes, samples and preprocessing."""
