# An S3-compatible server for chatctl's tests and benchmarks: moto's, on the port given,
# until standard input closes (the process that started it is gone).
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
sys.stdin.read()
server.stop()
