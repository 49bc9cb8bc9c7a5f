"""Traffic on lo for capture.sh: three ICMP echo requests to 127.0.0.1, then a TCP
connection attempt to 127.0.0.1:8080 and one to 127.0.0.1:9999."""
import socket
import struct


def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


for seq in range(3):
    packet = struct.pack("!BBHHH", 8, 0, 0, 1, seq) + b"x" * 56
    packet = packet[:2] + struct.pack("!H", checksum(packet)) + packet[4:]
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(1)
    sock.sendto(packet, ("127.0.0.1", 0))
    try:
        sock.recv(200)
    except OSError:
        pass
    sock.close()

for port in (8080, 9999):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        pass
