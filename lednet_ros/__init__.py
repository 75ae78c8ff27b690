"""lednet_ros: LEDNet semantic segmentation for ROS 2 (core without ROS; node, tools with it).

The messages of msg/ are generated into the installed ``lednet_ros.msg``; extending ``__path__``
lets a source checkout imported first still find them in the install space.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)
