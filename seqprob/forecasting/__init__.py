"""Forecasting: data, the Forecaster API, models, metrics, backtests and the ETT benchmark."""
