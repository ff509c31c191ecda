"""The classic notebook's training loop, reproduced as written, for comparison only.

The SuperDataScience stacked-autoencoder notebook trains one user at a time and never calls `zero_grad`, so
gradients pile up across every step of an epoch; its RMSprop(lr=0.01, weight_decay=0.5) works only because
of that accident. Its reported test loss (0.949) is the mean over test users of each user's RMSE, with raw
(unclipped) predictions. This module keeps that loop runnable (`movierec train --faithful`) so anyone can
reproduce the number and time it against the vectorized loop in `train.py`.

It is deliberately the notebook's algorithm: dense per-user rows of a small data set (ml-100k), ids used as
indices (nb_users / nb_movies = the largest id in either file).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from movierec.core.models import Autoencoder
from movierec.trainer.config import ModelConfig

MAX_DENSE_CELLS = 50_000_000  # the notebook's dense matrices only make sense for ml-100k-sized data


@dataclass
class FaithfulResult:
    model: Autoencoder
    train_loss: list[float]  # the notebook's per-epoch "loss" (mean over users of sqrt(MSE * mean_corrector))
    test_loss: float  # the notebook's test loss: mean over test users of per-user RMSE, unclipped
    seconds: float
    nb_users: int
    nb_movies: int


def _dense(df: pd.DataFrame, nb_users: int, nb_movies: int) -> torch.Tensor:
    out = torch.zeros(nb_users, nb_movies)
    u = torch.from_numpy(df["user"].to_numpy(np.int64) - 1)
    i = torch.from_numpy(df["item"].to_numpy(np.int64) - 1)
    out[u, i] = torch.tensor(df["rating"].to_numpy(np.float32))
    return out


def train_faithful(
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    epochs: int = 200,
    lr: float = 0.01,
    weight_decay: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> FaithfulResult:
    nb_users = int(max(train["user"].max(), test["user"].max()))
    nb_movies = int(max(train["item"].max(), test["item"].max()))
    if nb_users * nb_movies > MAX_DENSE_CELLS:
        raise ValueError(f"--faithful reproduces the notebook on ml-100k-sized data; {nb_users}x{nb_movies} is too big")
    torch.manual_seed(seed)
    training_set = _dense(train, nb_users, nb_movies)
    test_set = _dense(test, nb_users, nb_movies)
    sae = Autoencoder(ModelConfig(n_items=nb_movies, hidden=(20, 10, 20), activation="sigmoid"))
    criterion = nn.MSELoss()
    optimizer = torch.optim.RMSprop(sae.parameters(), lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc="faithful", unit="epoch", disable=not progress, file=sys.stderr)
    for _epoch in bar:
        train_loss, s = 0.0, 0.0
        for id_user in range(nb_users):  # the notebook's loop, one user per step, no zero_grad (sic)
            inp = training_set[id_user].unsqueeze(0)
            target = inp.clone()
            if torch.sum(target > 0) > 0:
                output = sae(inp)
                output[target == 0] = 0
                loss = criterion(output, target)
                mean_corrector = nb_movies / float(torch.sum(target > 0) + 1e-10)
                loss.backward()
                train_loss += float(np.sqrt(float(loss.detach()) * mean_corrector))
                s += 1.0
                optimizer.step()
        losses.append(train_loss / max(s, 1.0))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    seconds = time.perf_counter() - start
    with torch.no_grad():
        out = sae(training_set)
        mask = test_set > 0
        per_user_sq = ((out - test_set) * mask).pow(2).sum(dim=1)
        counts = mask.sum(dim=1)
        has = counts > 0
        test_loss = float(torch.sqrt(per_user_sq[has] / counts[has]).mean())
    return FaithfulResult(sae, losses, test_loss, seconds, nb_users, nb_movies)
