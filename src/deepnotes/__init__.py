"""deepnotes: the deep-learning course notes as a toolkit on PyTorch.

Start with ``deepnotes train`` on the command line, or in Python::

    from deepnotes.models import create_model
    model = create_model("lenet5", num_classes=10, in_channels=1)
"""

__version__ = "0.1.0"
