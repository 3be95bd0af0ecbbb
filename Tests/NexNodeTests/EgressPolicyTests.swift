import Testing

@testable import NexNode

/// The HTTP host service's egress policy, without connecting anywhere: address scopes, the allow-list and the
/// reasons a refusal gives.
@Suite struct EgressPolicyTests {
    private func scope(_ text: String) -> AddressScope { AddressScope(of: IPAddress(text)!) }

    @Test func addressesThatAreNotGlobalAreClassified() {
        #expect(scope("127.0.0.1") == .loopback && scope("127.255.0.9") == .loopback && scope("::1") == .loopback)
        #expect(scope("169.254.169.254") == .linkLocal && scope("fe80::1") == .linkLocal)
        for text in [
            "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1", "fd00:ec2::254", "fec0::1",
        ] {
            #expect(scope(text) == .privateNetwork, "\(text)")
        }
        #expect(scope("0.0.0.0") == .unspecified && scope("::") == .unspecified && scope("0.1.2.3") == .unspecified)
        #expect(scope("224.0.0.251") == .multicast && scope("ff02::1") == .multicast)
        for text in ["255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1", "2001:db8::1", "2001::1", "::7f00:1"] {
            #expect(scope(text) == .reserved, "\(text)")
        }
    }

    @Test func globalAddressesAreAllowedByDefault() {
        for text in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "11.0.0.1"] {
            #expect(scope(text) == .global, "\(text)")
            #expect(EgressPolicy.globalOnly.refusal(host: text, port: 443, address: IPAddress(text)!) == nil)
        }
    }

    /// IPv6 forms that carry an IPv4 address reach that address, so they have its scope.
    @Test func embeddedIPv4AddressesKeepTheirScope() {
        #expect(scope("::ffff:127.0.0.1") == .loopback)
        #expect(scope("::ffff:169.254.169.254") == .linkLocal)
        #expect(scope("64:ff9b::10.0.0.1") == .privateNetwork)
        #expect(scope("2002:c0a8:0101::1") == .privateNetwork)  // 6to4 of 192.168.1.1
        #expect(scope("::ffff:8.8.8.8") == .global)
    }

    @Test func theRefusalNamesTheAddressTheReasonAndTheFix() throws {
        let refusal = try #require(
            EgressPolicy.globalOnly.refusal(host: "metadata.internal", port: 80, address: IPAddress("169.254.169.254")!)
        )
        #expect(refusal.scope == .linkLocal)
        let text = refusal.description
        #expect(text.contains("metadata.internal (169.254.169.254) port 80"), "\(text)")
        #expect(text.contains("cloud metadata"), "\(text)")
        #expect(text.contains("host_services_config.services.http.config.allow"), "\(text)")
        #expect(text.contains("169.254.169.254/32 or metadata.internal:80"), "\(text)")
    }

    @Test func theAllowListOpensNetworksAndEndpoints() throws {
        let policy = try EgressPolicy(allowList: "10.1.0.0/16, localhost:8080 [::1]:9000,192.168.7.7")
        func allowed(_ host: String, _ port: Int, _ address: String) -> Bool {
            policy.refusal(host: host, port: port, address: IPAddress(address)!) == nil
        }
        #expect(allowed("10.1.200.3", 1, "10.1.200.3") && !allowed("10.2.0.1", 1, "10.2.0.1"))
        #expect(allowed("LocalHost", 8080, "127.0.0.1") && !allowed("localhost", 8081, "127.0.0.1"))
        #expect(!allowed("127.0.0.1", 8080, "127.0.0.1"), "an allowed name does not open its address to others")
        #expect(allowed("::1", 9000, "::1") && allowed("ip6-localhost", 9000, "::1") && !allowed("::1", 9001, "::1"))
        #expect(allowed("192.168.7.7", 5, "192.168.7.7") && allowed("x", 6, "::ffff:192.168.7.7"))
        #expect(!allowed("169.254.169.254", 80, "169.254.169.254"))
    }

    @Test func badAllowListsAreRefusedWithTheEntry() {
        for (config, fragment) in [
            (["allow": "10.0.0.0/33"], "\"10.0.0.0/33\" is not a CIDR"),
            (["allow": "nonsense"], "\"nonsense\" is neither a CIDR"),
            (["allow": "host:99999"], "\"host:99999\""),
            (["allow": ":80"], "names no host"),
            (["allowed": "10.0.0.0/8"], "\"allowed\" is not a setting of the http host service"),
        ] {
            #expect {
                _ = try EgressPolicy(config: config)
            } throws: { error in
                "\(error)".contains(fragment) && "\(error)".contains("host_services_config.services.http.config")
            }
        }
        #expect((try? EgressPolicy(config: nil)) == .globalOnly)
    }
}
