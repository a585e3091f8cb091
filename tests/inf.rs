//! Checks the INF of each architecture in the package (`scripts/package.sh` stamps it from
//! wintun.inx; the package is brought up to date first, `artifacts`). There is no infverif on
//! Linux, so this parses the INF as SetupAPI does and asserts every section and directive the
//! adapter needs.

mod artifacts;

use std::collections::HashMap;

/// One line of a section: `key = value, value` or just `value, value`, comments removed,
/// quotes resolved and `%strkey%` tokens replaced from [Strings].
#[derive(Debug, PartialEq)]
struct Line {
    key: Option<String>,
    values: Vec<String>,
}

/// An INF file: sections by lower-cased name (INF section names ignore case; sections of the
/// same name merge), their lines in order.
struct Inf {
    sections: HashMap<String, Vec<Line>>,
}

/// The fields of one logical line: split at the first `=` into a key and at every `,` into
/// values, outside quotes; `;` outside quotes starts a comment; `""` in quotes is one quote.
/// Whitespace is trimmed from the ends of each field, but not from inside quotes.
fn split_line(text: &str) -> (Option<String>, Vec<String>) {
    let mut key = None;
    let mut fields = Vec::new();
    // The current field, each character with whether it was quoted.
    let mut field: Vec<(char, bool)> = Vec::new();
    let finish = |field: &mut Vec<(char, bool)>| {
        let start = field
            .iter()
            .position(|&(c, quoted)| quoted || !c.is_whitespace());
        let end = field
            .iter()
            .rposition(|&(c, quoted)| quoted || !c.is_whitespace());
        let text = match (start, end) {
            (Some(start), Some(end)) => field[start..=end].iter().map(|&(c, _)| c).collect(),
            _ => String::new(),
        };
        field.clear();
        text
    };
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push(('"', true));
            }
            '"' => quoted = !quoted,
            _ if quoted => field.push((c, true)),
            ';' => break,
            '=' if key.is_none() && fields.is_empty() => key = Some(finish(&mut field)),
            ',' => fields.push(finish(&mut field)),
            _ => field.push((c, false)),
        }
    }
    assert!(!quoted, "unterminated quote in {text:?}");
    let last = finish(&mut field);
    if !(last.is_empty() && fields.is_empty() && key.is_none()) {
        fields.push(last);
    }
    (key, fields)
}

/// Replaces each `%strkey%` found in [Strings] (keys ignore case) and `%%` by `%`; other
/// `%...%` tokens, like the directory ID `%13%`, stay as they are.
fn substitute(text: &str, strings: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        match strings.get(&name.to_lowercase()) {
            _ if name.is_empty() => out.push('%'),
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[start..start + end + 2]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

impl Inf {
    fn parse(text: &str) -> Inf {
        let mut raw: Vec<(String, String)> = Vec::new();
        let mut section: Option<String> = None;
        let mut pending = String::new();
        for line in text.lines() {
            // A backslash at the end of a line (outside a comment) continues it.
            let code = split_comment(line).trim_end();
            if let Some(continued) = code.strip_suffix('\\') {
                pending.push_str(continued);
                continue;
            }
            let logical = std::mem::take(&mut pending) + line;
            let trimmed = logical.trim();
            if let Some(header) = trimmed.strip_prefix('[') {
                let name = header.split(']').next().unwrap().trim();
                section = Some(name.to_lowercase());
                raw.push((name.to_lowercase(), String::new()));
                continue;
            }
            if let Some(section) = &section {
                raw.push((section.clone(), logical));
            }
        }

        let strings: HashMap<String, String> = raw
            .iter()
            .filter(|(section, _)| section == "strings")
            .map(|(_, line)| split_line(line))
            .filter_map(|(key, values)| Some((key?.to_lowercase(), values.join(","))))
            .collect();
        let mut sections: HashMap<String, Vec<Line>> = HashMap::new();
        for (section, line) in raw {
            let lines = sections.entry(section).or_default();
            let (key, values) = split_line(&line);
            if key.is_none() && values.is_empty() {
                continue;
            }
            lines.push(Line {
                key: key.map(|key| substitute(&key, &strings)),
                values: values.iter().map(|v| substitute(v, &strings)).collect(),
            });
        }
        Inf { sections }
    }

    fn section(&self, name: &str) -> &[Line] {
        let lines = self.sections.get(&name.to_lowercase());
        lines.unwrap_or_else(|| panic!("no section [{name}]"))
    }

    /// The values of the one directive `key` in `section` (keys ignore case).
    fn directive(&self, section: &str, key: &str) -> &[String] {
        let mut found = self.section(section).iter().filter(|line| {
            line.key
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(key))
        });
        let line = found
            .next()
            .unwrap_or_else(|| panic!("[{section}] has no {key}"));
        assert!(found.next().is_none(), "[{section}] has {key} twice");
        &line.values
    }

    /// The single value of the directive `key` in `section`.
    fn value(&self, section: &str, key: &str) -> &str {
        match self.directive(section, key) {
            [value] => value,
            values => panic!("[{section}] {key} = {values:?}: one value expected"),
        }
    }

    /// The value of `key` in `section` as a number, decimal or 0x-hexadecimal.
    fn number(&self, section: &str, key: &str) -> u32 {
        let value = self.value(section, key);
        let parsed = match value.strip_prefix("0x").or(value.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => value.parse(),
        };
        parsed.unwrap_or_else(|_| panic!("[{section}] {key} = {value}: not a number"))
    }
}

/// The part of a raw line before its comment (a `;` outside quotes).
fn split_comment(line: &str) -> &str {
    let mut quoted = false;
    for (index, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..index],
            _ => {}
        }
    }
    line
}

fn package_dir() -> String {
    artifacts::package().display().to_string()
}

/// The stamped INF of each architecture's package folder, with the folder's name.
fn packaged_infs() -> Vec<(String, String, Inf)> {
    ["amd64", "arm64"]
        .into_iter()
        .map(|arch| {
            let path = format!("{}/{arch}/oxtun.inf", package_dir());
            let text =
                std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
            (arch.to_owned(), text.clone(), Inf::parse(&text))
        })
        .collect()
}

#[test]
fn parser_handles_comments_quotes_continuations_and_strings() {
    let inf = Inf::parse(concat!(
        "; a comment\n",
        "[Version] ; comment after a header\n",
        "Signature = \"$Windows NT$\"\n",
        "[version]\n",
        "Provider = %Name% ; the provider\n",
        "[Files]\n",
        "  oxtun.sys  \n",
        "HKR, Ndi, Service, 0, \" a;b \"\"q\"\" \", %%, %13%\\x.sys\n",
        "Long = one, \\\n",
        "       two\n",
        "[Strings]\n",
        "NAME = \"ox tun\"\n",
    ));
    assert_eq!(inf.value("VERSION", "signature"), "$Windows NT$");
    assert_eq!(inf.value("Version", "Provider"), "ox tun");
    let files = inf.section("files");
    assert_eq!(
        files[0],
        Line {
            key: None,
            values: vec!["oxtun.sys".into()]
        }
    );
    assert_eq!(
        files[1].values,
        [
            "HKR",
            "Ndi",
            "Service",
            "0",
            " a;b \"q\" ",
            "%",
            "%13%\\x.sys"
        ]
    );
    assert_eq!(inf.directive("Files", "long"), ["one", "two"]);
}

#[test]
fn version_section_names_the_net_class_catalog_and_stamped_version() {
    let version = env!("CARGO_PKG_VERSION");
    for (arch, text, inf) in packaged_infs() {
        assert_eq!(inf.value("Version", "Signature"), "$Windows NT$", "{arch}");
        assert_eq!(inf.value("Version", "Class"), "Net", "{arch}");
        assert!(
            inf.value("Version", "ClassGUID")
                .eq_ignore_ascii_case("{4d36e972-e325-11ce-bfc1-08002be10318}"),
            "{arch}: the Net class GUID"
        );
        assert_eq!(inf.value("Version", "Provider"), "oxtun", "{arch}");
        assert_eq!(inf.value("Version", "CatalogFile"), "oxtun.cat", "{arch}");
        assert_eq!(inf.number("Version", "PnpLockdown"), 1, "{arch}");

        // DriverVer = MM/DD/YYYY,major.minor.patch.0, as stampinf writes it.
        let [date, driver_version] = inf.directive("Version", "DriverVer") else {
            panic!("{arch}: DriverVer is a date and a version");
        };
        assert_eq!(driver_version, &format!("{version}.0"), "{arch}");
        let parts: Vec<u32> = date.split('/').map(|part| part.parse().unwrap()).collect();
        assert!(
            date.len() == 10 && matches!(parts[..], [1..=12, 1..=31, 2025..=2999]),
            "{arch}: DriverVer date {date}"
        );
        // Nothing is left for stampinf to fill.
        let text = text.replace("$Windows NT$", "");
        assert!(!text.contains('$'), "{arch}: an unstamped $ token");
    }
}

#[test]
fn models_section_is_decorated_for_the_folder_architecture_and_windows_2004() {
    for (arch, _, inf) in packaged_infs() {
        let decoration = format!("NT{arch}.10.0...19041");
        let manufacturer = inf.section("Manufacturer");
        assert_eq!(manufacturer.len(), 1, "{arch}: one manufacturer");
        assert_eq!(manufacturer[0].key.as_deref(), Some("oxtun"), "{arch}");
        assert_eq!(
            manufacturer[0].values,
            ["OxTun", decoration.as_str()],
            "{arch}"
        );

        let models = inf.section(&format!("OxTun.{decoration}"));
        assert_eq!(models.len(), 1, "{arch}: one device");
        assert_eq!(
            models[0].key.as_deref(),
            Some("OxTun Userspace Tunnel"),
            "{arch}"
        );
        let [install, hardware_id] = &models[0].values[..] else {
            panic!("{arch}: a device is an install section and a hardware ID");
        };
        assert_eq!(install, "OxTun.Install", "{arch}");
        assert_eq!(hardware_id, "OxTun", "{arch}");
        assert!(
            !hardware_id.eq_ignore_ascii_case("Wintun"),
            "{arch}: the official Wintun's hardware ID"
        );
    }
}

#[test]
fn install_section_makes_a_virtual_ip_adapter() {
    for (arch, _, inf) in packaged_infs() {
        let install = "OxTun.Install";
        assert_eq!(
            inf.number(install, "Characteristics"),
            0x1,
            "{arch}: NCF_VIRTUAL"
        );
        for (keyword, value) in [
            ("*IfType", 53),            // IF_TYPE_PROP_VIRTUAL
            ("*MediaType", 19),         // NdisMediumIP
            ("*PhysicalMediaType", 0),  // NdisPhysicalMediumUnspecified
            ("*IfConnectorPresent", 0), // virtual: no connector
            ("*ConnectionType", 1),     // NET_IF_CONNECTION_DEDICATED
            ("*DirectionType", 0),      // NET_IF_DIRECTION_SENDRECEIVE
            ("*AccessType", 2),         // NET_IF_ACCESS_BROADCAST
            ("*HardwareLoopback", 0),
        ] {
            assert_eq!(inf.number(install, keyword), value, "{arch}: {keyword}");
        }

        let registry: Vec<&[String]> = inf
            .directive(install, "AddReg")
            .iter()
            .flat_map(|section| inf.section(section))
            .map(|line| &line.values[..])
            .collect();
        let add_reg = inf.directive(install, "AddReg").join(", ");
        for expected in [
            ["HKR", "Ndi", "Service", "0", "oxtun"],
            ["HKR", "Ndi\\Interfaces", "UpperRange", "0", "ndis5"],
            ["HKR", "Ndi\\Interfaces", "LowerRange", "0", "nolower"],
        ] {
            assert!(
                registry.iter().any(|values| values == &expected),
                "{arch}: [{add_reg}] lacks {expected:?}"
            );
        }
    }
}

#[test]
fn service_is_a_demand_start_kernel_driver_of_the_ndis_group_not_wintuns() {
    for (arch, _, inf) in packaged_infs() {
        let services = "OxTun.Install.Services";
        let [name, flags, section] = inf.directive(services, "AddService") else {
            panic!("{arch}: AddService = name, flags, section");
        };
        assert_eq!(name, "oxtun", "{arch}");
        assert!(
            !name.eq_ignore_ascii_case("Wintun"),
            "{arch}: Wintun's service"
        );
        assert_eq!(flags, "2", "{arch}: SPSVCINST_ASSOCSERVICE");

        assert!(!inf.value(section, "DisplayName").is_empty(), "{arch}");
        assert_eq!(
            inf.number(section, "ServiceType"),
            1,
            "{arch}: kernel driver"
        );
        assert_eq!(inf.number(section, "StartType"), 3, "{arch}: demand start");
        assert_eq!(inf.number(section, "ErrorControl"), 1, "{arch}: normal");
        // No LoadOrderGroup: a demand-start PnP driver loads when its device is found, not in a
        // group's order (Wintun dropped its NDIS group in 47c8eda; review 2026-12-06, 4.3).
        assert!(
            !inf.section(section)
                .iter()
                .any(|line| line.key.as_deref() == Some("LoadOrderGroup")),
            "{arch}"
        );
        // %13%: the driver store, where PnpLockdown drivers run from.
        assert_eq!(
            inf.value(section, "ServiceBinary"),
            "%13%\\oxtun.sys",
            "{arch}"
        );
    }
}

#[test]
fn copies_the_image_of_its_own_folder_from_the_driver_store() {
    for (arch, _, inf) in packaged_infs() {
        let copy_files = inf.value("OxTun.Install", "CopyFiles");
        let files: Vec<&[String]> = inf
            .section(copy_files)
            .iter()
            .map(|line| &line.values[..])
            .collect();
        assert_eq!(files, [["oxtun.sys"]], "{arch}: [{copy_files}]");
        assert_eq!(inf.number("DestinationDirs", copy_files), 13, "{arch}");
        assert_eq!(inf.value("SourceDisksFiles", "oxtun.sys"), "1", "{arch}");
        assert!(!inf.value("SourceDisksNames", "1").is_empty(), "{arch}");
        assert_eq!(
            inf.value("ControlFlags", "ExcludeFromSelect"),
            "*",
            "{arch}"
        );

        let image = format!("{}/{arch}/oxtun.sys", package_dir());
        assert!(
            std::path::Path::new(&image).is_file(),
            "{arch}: no {image} beside the INF"
        );
    }
}

/// The task offloads' standardized keywords, each an enumeration with the values and names its
/// Microsoft page gives ("Using Registry Values to Enable and Disable Task Offloading", "UDP
/// Segmentation Offload (USO)", "Standardized INF Keywords for RSC"), and as its default the
/// value the driver takes when the key lacks one (`oxtun_driver::OFFLOAD_KEYWORDS`).
#[test]
fn offload_keywords_are_documented_enumerations_defaulting_as_the_driver_does() {
    let checksum = [
        ("0", "Disabled"),
        ("1", "Tx Enabled"),
        ("2", "Rx Enabled"),
        ("3", "Rx & Tx Enabled"),
    ];
    let switch = [("0", "Disabled"), ("1", "Enabled")];
    type Enumeration = [(&'static str, &'static str)];
    let documented: [(&str, &str, &Enumeration); 11] = [
        ("*IPChecksumOffloadIPv4", "IPv4 Checksum Offload", &checksum),
        (
            "*TCPChecksumOffloadIPv4",
            "TCP Checksum Offload (IPv4)",
            &checksum,
        ),
        (
            "*TCPChecksumOffloadIPv6",
            "TCP Checksum Offload (IPv6)",
            &checksum,
        ),
        (
            "*UDPChecksumOffloadIPv4",
            "UDP Checksum Offload (IPv4)",
            &checksum,
        ),
        (
            "*UDPChecksumOffloadIPv6",
            "UDP Checksum Offload (IPv6)",
            &checksum,
        ),
        ("*LsoV2IPv4", "Large Send Offload V2 (IPv4)", &switch),
        ("*LsoV2IPv6", "Large Send Offload V2 (IPv6)", &switch),
        ("*UsoIPv4", "UDP Segmentation Offload (IPv4)", &switch),
        ("*UsoIPv6", "UDP Segmentation Offload (IPv6)", &switch),
        ("*RscIPv4", "Recv Segment Coalescing (IPv4)", &switch),
        ("*RscIPv6", "Recv Segment Coalescing (IPv6)", &switch),
    ];
    let defaults: HashMap<&str, u32> = oxtun_driver::OFFLOAD_KEYWORDS.into_iter().collect();
    assert_eq!(defaults.len(), documented.len());
    for (arch, _, inf) in packaged_infs() {
        let lines: Vec<&Line> = inf
            .directive("OxTun.Install", "AddReg")
            .iter()
            .flat_map(|section| inf.section(section))
            .collect();
        let value = |key: &str, name: &str| -> Vec<String> {
            lines
                .iter()
                .filter(|line| {
                    line.values.len() == 5
                        && line.values[0] == "HKR"
                        && line.values[1] == key
                        && line.values[2] == name
                        && line.values[3] == "0"
                })
                .map(|line| line.values[4].clone())
                .collect()
        };
        for (keyword, description, enumeration) in documented {
            let key = format!("Ndi\\params\\{keyword}");
            assert_eq!(value(&key, "ParamDesc"), [description], "{arch}: {keyword}");
            assert_eq!(value(&key, "Type"), ["enum"], "{arch}: {keyword}");
            let default = defaults[keyword].to_string();
            assert_eq!(value(&key, "Default"), [default], "{arch}: {keyword}");
            let values: Vec<(String, String)> = lines
                .iter()
                .filter(|line| line.values.len() == 5 && line.values[1] == format!("{key}\\enum"))
                .map(|line| (line.values[2].clone(), line.values[4].clone()))
                .collect();
            let expected: Vec<(String, String)> = enumeration
                .iter()
                .map(|(value, name)| (value.to_string(), name.to_string()))
                .collect();
            assert_eq!(values, expected, "{arch}: {keyword}");
        }
    }
}
