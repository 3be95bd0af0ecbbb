/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), appended little-endian to every encoded key.
enum CRC16 {
    static let table: [UInt16] = (0..<256).map { i in
        var crc = UInt16(i) << 8
        for _ in 0..<8 { crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }

    static func checksum(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for b in bytes { crc = (crc << 8) ^ table[Int(UInt8(crc >> 8) ^ b)] }
        return crc
    }
}
