#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("../../boot/entry.s"));

#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn xenia_start64(_mbi: u32) -> ! {
    for b in b"Xenia hello\r\n" {
        // SAFETY: test
        unsafe { core::arch::asm!("out dx, al", in("dx") 0x3f8u16, in("al") *b) };
    }
    unsafe { core::arch::asm!("out dx, al", in("dx") 0xf4u16, in("al") 0x10u8) };
    loop {}
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! { loop {} }

#[cfg(not(target_os = "none"))]
fn main() {}
