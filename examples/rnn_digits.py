"""A recurrent network reads scikit-learn's 8x8 digits row by row and classifies them.

    h_0 = 0,   h_t = tanh(W h_{t-1} + U x_t + b)   for the 8 rows x_t (8 pixels each)
    logits = V h_8 + c,   softmax cross-entropy

The recurrence is one ``sd.scan`` node: its body (one step of the cell) is compiled
once, whatever the number of steps.  The gradient is backpropagation through time:
``sd.grad`` builds a reverse scan over the stored hidden states whose body is the
derivative of the cell, and the gradients of W, U and b (used at every step: weight
tying) are summed over the steps in that loop's carry.  The batch size is ``None``:
one compiled kernel serves every minibatch and the whole test set.  Training is Adam
on minibatches, seeded, so a run is reproducible.

    pip install -e '.[examples]'          # scikit-learn: the digits ship with it
    python examples/rnn_digits.py         # test accuracy ~0.98
    python examples/rnn_digits.py --epochs 5 --backend numpy
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import symdiff as sd

CLASSES, ROWS, PIXELS = 10, 8, 8


def build_step(hidden: int, backend: str):
    """One compiled function: (weights..., X, Y) -> (loss, logits, gradients...)."""
    W, U, b = sd.matrix("W", (hidden, hidden)), sd.matrix("U", (hidden, PIXELS)), sd.vector("b", hidden)
    V, c = sd.matrix("V", (hidden, CLASSES)), sd.vector("c", CLASSES)
    X = sd.tensor("X", (ROWS, None, PIXELS))  # rows first: the scan walks the leading axis
    Y = sd.matrix("Y", (None, CLASSES))  # one-hot labels

    def cell(h, row):  # h: (batch, hidden), row: (batch, pixels)
        return sd.tanh(h @ W.T + row @ U.T + b), None

    h0 = sd.zeros_like(X[0] @ U.T)  # (batch, hidden) zeros: the batch size is known at run time
    h, _ = sd.scan(cell, h0, X)
    logits = h @ V + c
    loss = sd.mean(-sd.sum(Y * sd.log_softmax(logits, axis=1), axis=1))
    params = [W, U, b, V, c]
    return sd.function(params + [X, Y], [loss, logits, *sd.grad(loss, params)], backend=backend)


def init_params(rng, hidden: int) -> list:
    """Orthogonal recurrent weights (a stable start for backprop through time), small input weights."""
    q, _ = np.linalg.qr(rng.normal(size=(hidden, hidden)))
    return [q * 0.9, rng.normal(0, 1 / np.sqrt(PIXELS), (hidden, PIXELS)), np.zeros(hidden),
            rng.normal(0, 1 / np.sqrt(hidden), (hidden, CLASSES)), np.zeros(CLASSES)]


def load_data(seed: int):
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:  # the example's extra: name it instead of a bare ModuleNotFoundError
        raise SystemExit("rnn_digits.py trains on scikit-learn's digits: install the examples extra, "
                         "pip install 'symdiff[examples]' (or pip install scikit-learn)") from None

    digits = load_digits()  # 1797 images of 8x8 pixels, values 0..16
    images = digits.images / 16.0
    one_hot = np.eye(CLASSES)[digits.target]
    return train_test_split(images, one_hot, test_size=0.25, random_state=seed, stratify=digits.target)


def rows_first(images):
    """(batch, rows, pixels) -> (rows, batch, pixels), contiguous."""
    return np.ascontiguousarray(np.transpose(images, (1, 0, 2)))


def accuracy(logits, one_hot) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == np.argmax(one_hot, axis=1)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Train an RNN on the digits by backprop through time.")
    parser.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    X_train, X_test, Y_train, Y_test = load_data(args.seed)
    step = build_step(args.hidden, args.backend)
    rng = np.random.default_rng(args.seed)
    params = init_params(rng, args.hidden)
    step(*params, rows_first(X_train[:2]), Y_train[:2])  # the first call compiles (or loads the cached kernel)
    print(f"data loaded, value+gradient function built and first call done ({args.backend} backend): "
          f"{time.perf_counter() - started:.2f} s")

    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    beta1, beta2, updates = 0.9, 0.999, 0
    train_accuracy = test_accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(X_train))
        total_loss, correct = 0.0, 0
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            loss, logits, *grads = step(*params, rows_first(X_train[batch]), Y_train[batch])
            updates += 1
            for p, m, v, g in zip(params, first, second, grads):  # Adam, in place
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * g * g
                p -= args.lr * (m / (1 - beta1 ** updates)) / (np.sqrt(v / (1 - beta2 ** updates)) + 1e-8)
            total_loss += float(loss) * len(batch)
            correct += int(np.sum(np.argmax(logits, axis=1) == np.argmax(Y_train[batch], axis=1)))
        train_accuracy = correct / len(X_train)
        test_loss, test_logits, *_ = step(*params, rows_first(X_test), Y_test)
        test_accuracy = accuracy(test_logits, Y_test)
        print(f"epoch {epoch:3d}  train loss {total_loss / len(X_train):.4f}  train accuracy {train_accuracy:.4f}  "
              f"test loss {float(test_loss):.4f}  test accuracy {test_accuracy:.4f}  "
              f"({time.perf_counter() - started:.1f} s)")

    seconds = time.perf_counter() - started
    print(f"total time {seconds:.1f} s (data, graph, compilation and training)")
    print(f"final train accuracy {train_accuracy:.4f}")
    print(f"final test accuracy {test_accuracy:.4f}")
    return {"accuracy": test_accuracy, "train_accuracy": train_accuracy, "seconds": seconds}


if __name__ == "__main__":
    main()
