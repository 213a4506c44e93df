"""marginface.caffe: run, train and convert Caffe nets (prototxt + caffemodel) in PyTorch."""

from marginface.caffe.net import CaffeNet, load_net
from marginface.caffe.prototxt import Message, parse_prototxt, read_prototxt
from marginface.caffe.weights import LoadReport, load_caffemodel, save_caffemodel

__all__ = ["CaffeNet", "LoadReport", "Message", "load_caffemodel", "load_net",
           "parse_prototxt", "read_prototxt", "save_caffemodel"]
