//! `cargo xtask lab up|down`: the lab topology by hand (see `strata_lab`).

use strata_lab::Lab;

use crate::cmd::require_root;

pub(crate) fn up(prefix: &str, links: usize) -> anyhow::Result<()> {
    require_root("cargo xtask lab up")?;
    let lab = Lab::up(prefix, links)?;
    println!("lab {prefix}: {links} link(s)");
    println!("  edge  {}  (links lnk0..lnk{})", lab.edge_ns(), links - 1);
    for i in 0..links {
        println!(
            "  carrier {}  {} → NAT {}",
            lab.carrier_ns(i),
            Lab::link_gateway(i),
            Lab::carrier_public_addr(i)
        );
    }
    println!("  inet  {}", lab.inet_ns());
    println!(
        "  hub   {}  ({} {})",
        lab.hub_ns(),
        Lab::HUB_IFNAME,
        Lab::hub_addr()
    );
    println!("remove with: cargo xtask lab down --prefix {prefix}");
    lab.persist();
    Ok(())
}

pub(crate) fn down(prefix: &str) -> anyhow::Result<()> {
    require_root("cargo xtask lab down")?;
    Lab::down_prefix(prefix)?;
    println!("lab {prefix}: removed");
    Ok(())
}
