"""marginface.caffe."""
