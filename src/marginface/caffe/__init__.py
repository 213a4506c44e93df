"""marginface.caffe: run, train and convert Caffe nets (prototxt + caffemodel) in PyTorch."""

from marginface.caffe.net import CaffeNet, load_net
from marginface.caffe.prototxt import Message, parse_prototxt, read_prototxt

__all__ = ["CaffeNet", "Message", "load_net", "parse_prototxt", "read_prototxt"]
