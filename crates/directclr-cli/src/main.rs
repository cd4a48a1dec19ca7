fn main() {
    println!("{}", directclr::runtime::describe());
}
