"""Training LEDNet without ROS: datasets, paired transforms, the training loop and export."""
