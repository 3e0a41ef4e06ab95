"""Layers from the notes: convolution, pooling, batch norm, softmax, edge filters, and the
recurrent cells and layers (RNN, GRU, LSTM).

The convolutional layers keep torch's parameter names, so state_dicts match torch's (and
torchvision's). The recurrent cells store their parameters in torch's layout too, so that the
fused kernels read them in place, and give the notes' W_u, b_u, ... as ``cell.W_u`` or
``cell.notes()``.
"""

from deepnotes.nn.batchnorm import BatchNorm1d, BatchNorm2d
from deepnotes.nn.cells import GRUCell, LSTMCell, RNNCell
from deepnotes.nn.conv import Conv2d, conv_output_size, same_padding
from deepnotes.nn.edges import FILTERS, detect_edges, edge_filter
from deepnotes.nn.pooling import AvgPool2d, MaxPool2d
from deepnotes.nn.recurrent import GRU, LSTM, RNN
from deepnotes.nn.softmax import softmax

__all__ = ["FILTERS", "GRU", "LSTM", "RNN", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d",
           "GRUCell", "LSTMCell", "MaxPool2d", "RNNCell", "conv_output_size", "detect_edges",
           "edge_filter", "same_padding", "softmax"]
