// Users of the client need headers, server info and addresses without importing the protocol layer.
@_exported public import struct NATSProtocol.NATSHeaders
@_exported public import struct NATSProtocol.NATSMessage
@_exported public import struct NATSProtocol.ServerAddress
@_exported public import struct NATSProtocol.ServerInfo
@_exported public import struct NATSProtocol.ServerPool
@_exported public import struct NATSProtocol.TraceParent
