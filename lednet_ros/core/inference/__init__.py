"""Running the network: LEDNet, weights files, engines and the Segmenter."""
